namespace Dynamo.Load.Benchmarks;

/// <summary>
/// Starts the workers of the deployments <c>bench disagg</c> compares, each on infrastructure of its own (a fresh
/// namespace, or a fresh in-process cluster): worker processes of the built-in engine
/// (<see cref="WorkerProcessDeployer"/>) or mocker workers in this process (<see cref="InProcessDeployer"/>).
/// </summary>
internal interface IDisaggDeployer
{
    /// <summary>What the workers are, for the report.</summary>
    string Description { get; }

    /// <summary>Starts the workers of <paramref name="shape"/> and returns once each of them serves.</summary>
    Task<DisaggWorkers> StartAsync(DeploymentShape shape, CancellationToken cancellationToken = default);
}

using Dynamo.Cli.Components;
using Dynamo.Load.Benchmarks;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>The workers the bench commands deploy: this CLI's worker component, handed to Dynamo.Load as a <see cref="BenchWorker"/>.</summary>
internal static class BenchWorkers
{
    /// <summary>Starts a worker with <paramref name="settings"/> on the runtime it is given (its startup lines go nowhere).</summary>
    public static Func<DistributedRuntime, CancellationToken, Task<BenchWorker>> Starting(WorkerSettings settings) =>
        async (runtime, cancellationToken) =>
        {
            WorkerComponent worker = await WorkerComponent.StartAsync(runtime, settings, TextWriter.Null, cancellationToken);
            return new BenchWorker(worker.Engine, EndpointAddress.Parse(worker.Card.Endpoint), worker.Card.Name, worker);
        };
}

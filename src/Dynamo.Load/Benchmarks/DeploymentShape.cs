namespace Dynamo.Load.Benchmarks;

/// <summary>
/// The workers of one deployment <c>bench disagg</c> compares: <see cref="PrefillWorkers"/> prefill workers and
/// <see cref="Workers"/> workers that take the requests (decode workers beside prefill workers; aggregated ones,
/// which prefill everything themselves, without).
/// </summary>
internal readonly record struct DeploymentShape(int PrefillWorkers, int Workers)
{
    public bool IsDisaggregated => PrefillWorkers > 0;

    /// <summary>"disaggregated" or "aggregated".</summary>
    public string Name => IsDisaggregated ? "disaggregated" : "aggregated";

    /// <summary>"1 prefill + 1 decode" or "2 aggregated".</summary>
    public string Describe() => IsDisaggregated ? $"{PrefillWorkers} prefill + {Workers} decode" : $"{Workers} aggregated";

    /// <summary>Every worker of the deployment.</summary>
    public int Total => PrefillWorkers + Workers;
}

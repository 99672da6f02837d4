using Dynamo.Runtime;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// The started workers of one deployment: a runtime on their infrastructure for the bench's frontend, the
/// namespace and model they serve, how to read their counters, and what stops them (disposing: in reverse order
/// of <paramref name="owned"/>).
/// </summary>
internal sealed class DisaggWorkers(DistributedRuntime runtime, string ns, string model, Func<CancellationToken, Task<DisaggCounters>> readCounters, IReadOnlyList<IAsyncDisposable> owned) : IAsyncDisposable
{
    /// <summary>A runtime the frontend joins to see the workers (owned by this).</summary>
    public DistributedRuntime Runtime { get; } = runtime;

    public string Namespace { get; } = ns;

    public string Model { get; } = model;

    /// <summary>The workers' counters now (the frontend's decisions not included).</summary>
    public Task<DisaggCounters> ReadCountersAsync(CancellationToken cancellationToken = default) => readCounters(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        for (int i = owned.Count - 1; i >= 0; i--)
        {
            await owned[i].DisposeAsync().ConfigureAwait(false);
        }
    }
}

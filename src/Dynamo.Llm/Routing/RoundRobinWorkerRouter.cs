namespace Dynamo.Llm.Routing;

/// <summary>Each request to the next candidate in id order (one counter per endpoint); charges nothing.</summary>
public sealed class RoundRobinWorkerRouter : IWorkerRouter
{
    private int _next = -1;

    /// <inheritdoc/>
    public string Name => RouterModes.RoundRobin;

    /// <summary>The candidate for the next request (thread-safe).</summary>
    public long Pick(IReadOnlyList<long> candidates)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        return candidates[(int)((uint)Interlocked.Increment(ref _next) % (uint)candidates.Count)];
    }

    /// <inheritdoc/>
    public ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return ValueTask.FromResult(WorkerLease.Unmetered(Pick(request.Candidates)));
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

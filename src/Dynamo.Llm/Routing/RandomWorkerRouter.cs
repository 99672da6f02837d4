namespace Dynamo.Llm.Routing;

/// <summary>Each request to a uniformly random candidate; charges nothing.</summary>
public sealed class RandomWorkerRouter(Random? random = null) : IWorkerRouter
{
    private readonly Random _random = random ?? new Random();
    private readonly Lock _lock = new();

    /// <inheritdoc/>
    public string Name => RouterModes.Random;

    /// <inheritdoc/>
    public ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        long chosen;
        lock (_lock)
        {
            chosen = request.Candidates[_random.Next(request.Candidates.Count)];
        }

        return ValueTask.FromResult(WorkerLease.Unmetered(chosen));
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

namespace Dynamo.Components.Workers;

/// <summary>Settings of an <see cref="EngineWorker"/>; tests write <c>EngineWorkerOptions.Default with { ... }</c>.</summary>
public sealed record EngineWorkerOptions
{
    /// <summary>The defaults.</summary>
    public static EngineWorkerOptions Default { get; } = new();

    /// <summary>
    /// KV events waiting for the event plane. When it is full (the plane slower than the engine) the oldest
    /// are dropped and counted (<see cref="EngineWorker.KvEventsDropped"/>); a router sees the gap in the
    /// event ids and reloads the worker's dump, so its view heals.
    /// </summary>
    public int KvEventBufferCapacity { get; init; } = 65536;

    /// <summary>How often the worker publishes its load (<c>load_metrics</c>).</summary>
    public TimeSpan LoadMetricsInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public EngineWorkerOptions Validate()
    {
        if (KvEventBufferCapacity < 1)
        {
            throw new ArgumentException($"the KV event buffer must hold at least 1 event (got {KvEventBufferCapacity})");
        }

        if (LoadMetricsInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException($"the load metrics interval must be positive (got {LoadMetricsInterval})");
        }

        return this;
    }
}

namespace Dynamo.Llm.Routing;

/// <summary>One routing target's load (a worker, or one data-parallel rank of it) as a <see cref="KvRouter"/> counts it.</summary>
/// <param name="WorkerId">The worker.</param>
/// <param name="InFlight">Requests routed to it and not completed.</param>
/// <param name="ActivePrefillTokens">Uncached prompt tokens of its requests still before their first token.</param>
/// <param name="ActiveBlocks">KV blocks of its in-flight requests (distinct full blocks plus partial tails).</param>
/// <param name="ReportedBlocksUsed">KV blocks in use in its latest load report, faded by age (0 when none or stale).</param>
/// <param name="BatchBudget">Its batch budget in tokens.</param>
/// <param name="Saturated">Whether its active prefill tokens exceed the saturation threshold.</param>
/// <param name="IndexedBlocks">Blocks the KV index says it caches.</param>
public sealed record WorkerLoadSnapshot(
    long WorkerId, int InFlight, long ActivePrefillTokens, long ActiveBlocks, double ReportedBlocksUsed, int BatchBudget, bool Saturated, int IndexedBlocks)
{
    /// <summary>The worker's data-parallel rank this load is of (0 for a worker with one engine).</summary>
    public int DpRank { get; init; }

    /// <summary>Routing accuracy on it over its latest completed requests, 0..1 (1 when none reported yet; see <see cref="KvRouterOptions.ResyncAccuracy"/>).</summary>
    public double Accuracy { get; init; } = 1;

    /// <summary>Resyncs of its index that falling accuracy asked for.</summary>
    public long AccuracyResyncs { get; init; }

    /// <summary>
    /// Its eviction estimate now: how long a block freed on it stays in its KV pool (<see cref="PoolRetention"/>; what a
    /// completed prefix counts as cached for without KV events, unless <see cref="KvRouterOptions.PrefixTtl"/> is set).
    /// </summary>
    public TimeSpan PrefixRetention { get; init; } = PoolRetention.DefaultRetention;
}

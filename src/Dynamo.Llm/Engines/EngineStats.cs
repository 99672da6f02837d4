namespace Dynamo.Llm.Engines;

/// <summary>A snapshot of an engine's load and counters (counters grow from the engine's start).</summary>
public sealed record EngineStats
{
    public int RunningRequests { get; init; }
    public int WaitingRequests { get; init; }
    /// <summary>
    /// Requests parked for their deferred KV (<see cref="EngineRequest.DeferredKv"/>): holding blocks (counted in
    /// <see cref="KvBlocksUsed"/>), neither running nor waiting, not scheduled until the KV arrives or fails.
    /// </summary>
    public int AwaitingKvRequests { get; init; }
    /// <summary>Blocks held by requests (running, waiting with imported KV, or parked for their KV).</summary>
    public int KvBlocksUsed { get; init; }
    public int KvBlocksTotal { get; init; }
    /// <summary>Bytes of keys and values the pool holds (its blocks x bytes per block); 0 for an engine that stores none.</summary>
    public long KvCacheBytes { get; init; }
    /// <summary>Blocks holding a cached prefix, used or free.</summary>
    public int KvBlocksCached { get; init; }
    public int BlockSize { get; init; }
    /// <summary>Tokens looked up in the prefix cache.</summary>
    public long PrefixQueryTokens { get; init; }
    /// <summary>Of those, tokens found cached (prefill skipped).</summary>
    public long PrefixHitTokens { get; init; }
    /// <summary>Prompt tokens of admitted requests (each counted once).</summary>
    public long PromptTokens { get; init; }
    public long GeneratedTokens { get; init; }
    public long Preemptions { get; init; }
    public long RequestsFinished { get; init; }
    public long Steps { get; init; }
    /// <summary>Transferred KV that could not be placed, with the request or delivered to a deferred import (the tokens were prefilled here instead).</summary>
    public long KvImportsRefused { get; init; }
    /// <summary>Time of a step in milliseconds, smoothed over about the last 10 steps (measured, or the mocker's modelled time); 0 before the first.</summary>
    public double StepMs { get; init; }
    /// <summary>The step-time budget the scheduler plans within (<c>--max-step-ms</c>); 0 when off.</summary>
    public double MaxStepMs { get; init; }

    /// <summary>Fraction of the KV pool in use, 0..1.</summary>
    public double KvUsage => KvBlocksTotal == 0 ? 0 : (double)KvBlocksUsed / KvBlocksTotal;

    /// <summary>Prefix-cache hit rate in tokens, 0..1.</summary>
    public double PrefixHitRate => PrefixQueryTokens == 0 ? 0 : (double)PrefixHitTokens / PrefixQueryTokens;

    /// <summary>
    /// The counters of several engines as one (a worker's data-parallel ranks): counts and blocks add up, the block
    /// size is theirs; the rates follow from the sums; the step time and budget are the largest rank's.
    /// </summary>
    public static EngineStats Sum(IEnumerable<EngineStats> ranks)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        EngineStats sum = new();
        foreach (EngineStats r in ranks)
        {
            sum = new EngineStats
            {
                RunningRequests = sum.RunningRequests + r.RunningRequests,
                WaitingRequests = sum.WaitingRequests + r.WaitingRequests,
                AwaitingKvRequests = sum.AwaitingKvRequests + r.AwaitingKvRequests,
                KvBlocksUsed = sum.KvBlocksUsed + r.KvBlocksUsed,
                KvBlocksTotal = sum.KvBlocksTotal + r.KvBlocksTotal,
                KvCacheBytes = sum.KvCacheBytes + r.KvCacheBytes,
                KvBlocksCached = sum.KvBlocksCached + r.KvBlocksCached,
                BlockSize = r.BlockSize,
                PrefixQueryTokens = sum.PrefixQueryTokens + r.PrefixQueryTokens,
                PrefixHitTokens = sum.PrefixHitTokens + r.PrefixHitTokens,
                PromptTokens = sum.PromptTokens + r.PromptTokens,
                GeneratedTokens = sum.GeneratedTokens + r.GeneratedTokens,
                Preemptions = sum.Preemptions + r.Preemptions,
                RequestsFinished = sum.RequestsFinished + r.RequestsFinished,
                Steps = sum.Steps + r.Steps,
                KvImportsRefused = sum.KvImportsRefused + r.KvImportsRefused,
                StepMs = Math.Max(sum.StepMs, r.StepMs),
                MaxStepMs = Math.Max(sum.MaxStepMs, r.MaxStepMs),
            };
        }

        return sum;
    }
}

using Dynamo.Llm.Scheduling;

namespace Dynamo.Llm.Engines;

/// <summary>What an engine tells its <see cref="EngineCore{TState}"/>: its pool, limits and names (already validated by the engine's options).</summary>
internal sealed record EngineCoreOptions
{
    /// <summary>Tokens per KV block.</summary>
    public required int BlockSize { get; init; }

    /// <summary>Blocks in the KV pool.</summary>
    public required int BlockCount { get; init; }

    /// <summary>Bytes of keys and values one block holds; 0 for an engine that stores none (the mocker, the echo engine).</summary>
    public long BlockBytes { get; init; }

    /// <summary>Context window in tokens (prompt and output).</summary>
    public required int ContextLength { get; init; }

    /// <summary>Prompt token ids must be below it.</summary>
    public required int VocabSize { get; init; }

    /// <summary>The flag that makes the KV pool larger, named when a prompt does not fit it ("--kv-cache-memory").</summary>
    public required string PoolFlag { get; init; }

    /// <summary>Batch limits and the step-time budget of a step.</summary>
    public required SchedulerOptions Scheduler { get; init; }

    /// <summary>What a step costs before any has run (a warm-up's measurement, the mocker's cost model); null: learned from the first steps.</summary>
    public StepCost? StepCostSeed { get; init; }

    /// <summary>Reuse cached blocks across requests, and publish KV events; false: no prefix cache, <see cref="EngineCore{TState}.KvEvents"/> null.</summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>The worker id KV events and dumps carry.</summary>
    public long WorkerId { get; init; }

    /// <summary>KV events kept for consumers that fell behind.</summary>
    public int EventHistory { get; init; } = 1024;

    /// <summary>Fault injection: the share of KV events lost without a gap in their ids (<see cref="Kv.KvEventLog(long, int, double, ulong)"/>); 0 for every real engine.</summary>
    public double KvEventLoss { get; init; }

    /// <summary>Seed of <see cref="KvEventLoss"/>'s draws.</summary>
    public ulong KvEventLossSeed { get; init; }
}

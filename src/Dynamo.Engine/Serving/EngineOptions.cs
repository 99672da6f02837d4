using Dynamo.Engine.KvCache;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Engine.Serving;

/// <summary>
/// Settings of an <see cref="InferenceEngine"/>, bound from the worker's flags. Validated by
/// <see cref="Validate"/>, whose messages name the flag.
/// </summary>
public sealed record EngineOptions
{
    public static EngineOptions Default { get; } = new();

    /// <summary>Tokens per KV block (<c>--block-size</c>).</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>
    /// KV cache size in bytes (<c>--kv-cache-memory</c>); null sizes it from the model, capped at
    /// <see cref="KvCacheMemoryFraction"/> of the memory available at start (<see cref="KvCacheBudget.Decide"/>).
    /// </summary>
    public long? KvCacheMemory { get; init; }

    /// <summary>
    /// The element type of the KV cache (<c>--kv-cache-dtype f16|f32</c>): F16 (llama.cpp's default) stores each key and
    /// value rounded to half, so the same memory holds twice the tokens and a decode step reads half the bytes.
    /// </summary>
    public KvCacheDtype KvCacheDtype { get; init; } = KvCacheDtype.F16;

    /// <summary>With no size set: the most of the memory available at start the KV cache may take (<c>--mem-fraction-static</c>).</summary>
    public double KvCacheMemoryFraction { get; init; } = 0.2;

    /// <summary>Sequences in the running batch at most (<c>--max-num-seqs</c>).</summary>
    public int MaxNumSeqs { get; init; } = 128;

    /// <summary>Tokens one step computes at most (<c>--max-num-batched-tokens</c>).</summary>
    public int MaxNumBatchedTokens { get; init; } = 512;

    /// <summary>The step-time budget when <see cref="MaxStepMs"/> is not given, in milliseconds.</summary>
    public const double DefaultMaxStepMs = 50;

    /// <summary>
    /// Step-time budget in milliseconds (<c>--max-step-ms</c>): a step adds prefill tokens, and admits requests, only while
    /// its predicted time stays within it, so that every running request's next token comes within about that time
    /// (see Dynamo.Llm/Scheduling/README.md); 0 turns it off (every step fills <see cref="MaxNumBatchedTokens"/>);
    /// null: <see cref="DefaultMaxStepMs"/> for this engine (the mocker, which takes the same flag, keeps its own).
    /// </summary>
    public double? MaxStepMs { get; init; }

    /// <summary>What a step costs before any has run (the worker measures it in its warm-up); null: learned from the first steps.</summary>
    public StepCost? StepCostSeed { get; init; }

    /// <summary>Context window (<c>--context-length</c>); null or larger than the model's takes the model's.</summary>
    public int? ContextLength { get; init; }

    /// <summary>Reuse cached KV blocks across requests with the same prefix.</summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>The worker id KV events carry.</summary>
    public long WorkerId { get; init; }

    /// <summary>
    /// Threads the kernels of this engine's passes use (its loop thread included), a pool of its own; null: the
    /// process-wide <see cref="Kernels.KernelThreads.Count"/>. Data-parallel replicas in one process each get a share
    /// of the cores this way, so that their passes run side by side instead of queueing for one pool.
    /// </summary>
    public int? KernelThreads { get; init; }

    /// <summary>KV events kept for consumers that missed some.</summary>
    public int EventHistory { get; init; } = 1024;

    public EngineOptions Validate()
    {
        static void Check(bool ok, string message)
        {
            if (!ok)
            {
                throw new ArgumentException(message);
            }
        }

        Check(BlockSize is >= 1 and <= 1024, $"--block-size must be 1..1024 (got {BlockSize})");
        Check(KvCacheMemory is null or > 0, $"--kv-cache-memory must be a positive number of bytes (got {KvCacheMemory})");
        Check(Enum.IsDefined(KvCacheDtype), $"--kv-cache-dtype must be f16 or f32 (got {KvCacheDtype})");
        Check(KernelThreads is null or >= 1, $"--threads must be at least 1 (got {KernelThreads})");
        Check(KvCacheMemoryFraction is > 0 and <= 0.95, $"--mem-fraction-static must be in (0, 0.95] (got {KvCacheMemoryFraction})");
        Check(MaxNumSeqs >= 1, $"--max-num-seqs must be at least 1 (got {MaxNumSeqs})");
        Check(MaxNumBatchedTokens >= 1, $"--max-num-batched-tokens must be at least 1 (got {MaxNumBatchedTokens})");
        Check(MaxStepMs is null or (>= 0 and < double.PositiveInfinity), $"--max-step-ms must be a finite number of milliseconds, 0 (off) or more (got {MaxStepMs})");
        Check(ContextLength is null or >= 2, $"--context-length must be at least 2 (got {ContextLength})");
        Check(EventHistory >= 1, $"the KV event history must hold at least one event (got {EventHistory})");
        return this;
    }
}

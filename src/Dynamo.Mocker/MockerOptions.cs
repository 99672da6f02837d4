namespace Dynamo.Mocker;

/// <summary>
/// Settings of a <see cref="MockerEngine"/>, bound from the worker's flags: the KV pool and batch limits
/// (the same meaning as the real engine's), the synthetic vocabulary, and the cost model that decides how
/// long each step takes. Validated by <see cref="Validate"/>, whose messages name the flag.
/// <para>
/// Cost model (see README.md): a step that computes <c>P</c> prefill tokens (prompt chunks, and recomputation
/// after preemption), <c>A</c> causal attention pairs within those chunks and <c>D</c> decode tokens (one per
/// decoding sequence) takes
/// <c>(StepMs + PrefillMsPerToken * P + AttentionMsPerTokenPair * A + DecodeMsPerSequence * D) / SpeedupRatio</c>
/// milliseconds. The defaults are plausible for an 8B-parameter model in 16-bit weights on one current
/// data-centre GPU: 8 ms to read the weights once per step, prefill at 20k tokens/s, 0.1 ms per decoding
/// sequence for its KV reads.
/// </para>
/// </summary>
public sealed record MockerOptions
{
    /// <summary>The defaults.</summary>
    public static MockerOptions Default { get; } = new();

    /// <summary>Tokens per KV block (<c>--block-size</c>).</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>KV pool size in blocks (<c>--num-gpu-blocks</c>).</summary>
    public int NumGpuBlocks { get; init; } = 16384;

    /// <summary>Sequences in the running batch at most (<c>--max-num-seqs</c>).</summary>
    public int MaxNumSeqs { get; init; } = 256;

    /// <summary>Tokens one step computes at most, prefill chunks and decode tokens together (<c>--max-num-batched-tokens</c>).</summary>
    public int MaxNumBatchedTokens { get; init; } = 8192;

    /// <summary>Context window in tokens, prompt and output (<c>--context-length</c>).</summary>
    public int ContextLength { get; init; } = 32768;

    /// <summary>Reuse cached KV blocks across requests with the same prefix, and publish KV events (<c>--enable-prefix-caching</c>).</summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>Simulated time runs this many times faster than the cost model says (<c>--speedup-ratio</c>); infinity never waits.</summary>
    public double SpeedupRatio { get; init; } = 1;

    /// <summary>Fixed cost of every step, in milliseconds (<c>--step-ms</c>): one pass over the weights.</summary>
    public double StepMs { get; init; } = 8;

    /// <summary>Cost of each prefill token computed in a step, in milliseconds (<c>--prefill-ms-per-token</c>).</summary>
    public double PrefillMsPerToken { get; init; } = 0.05;

    /// <summary>
    /// Cost of each causal (query, key) pair of the prefill chunks in a step, in milliseconds
    /// (<c>--attention-ms-per-token-pair</c>): the quadratic attention term of long prompts; 0 (the default) leaves it out.
    /// </summary>
    public double AttentionMsPerTokenPair { get; init; }

    /// <summary>Cost of each sequence decoding one token in a step, in milliseconds (<c>--decode-ms-per-seq</c>).</summary>
    public double DecodeMsPerSequence { get; init; } = 0.1;

    /// <summary>
    /// Step-time budget in simulated milliseconds (<c>--max-step-ms</c>); 0 (the default) off. As the real engine's: a step
    /// adds prefill, and admits requests, only while its time by the cost model stays within it (the scheduler's estimate
    /// starts from this cost model and learns from the modelled time of each step).
    /// </summary>
    public double MaxStepMs { get; init; }

    /// <summary>Token ids are 0..VocabSize-1: prompt tokens outside are rejected, generated tokens stay inside (<c>--vocab-size</c>).</summary>
    public int VocabSize { get; init; } = 32000;

    /// <summary>Seed of the synthetic tokens (<c>--seed</c>): the same seed and request give the same tokens.</summary>
    public ulong Seed { get; init; }

    /// <summary>The worker id KV events carry.</summary>
    public long WorkerId { get; init; }

    /// <summary>KV events kept for consumers that missed some.</summary>
    public int EventHistory { get; init; } = 1024;

    /// <summary>
    /// Fault injection (<c>--kv-event-loss</c>): the share of its KV events the mocker loses without a gap in their
    /// ids, as a worker whose event bridge drops events before numbering them would; its dumps stay true. Only the
    /// router's accuracy check can notice (predicted against actual cached tokens). 0 (default) loses none.
    /// </summary>
    public double KvEventLoss { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting; returns this.</summary>
    public MockerOptions Validate()
    {
        static void Check(bool ok, string message)
        {
            if (!ok)
            {
                throw new ArgumentException(message);
            }
        }

        static bool Cost(double ms) => double.IsFinite(ms) && ms >= 0;

        Check(BlockSize is >= 1 and <= 1024, $"--block-size must be 1..1024 (got {BlockSize})");
        Check(NumGpuBlocks >= 1, $"--num-gpu-blocks must be at least 1 (got {NumGpuBlocks})");
        Check(MaxNumSeqs >= 1, $"--max-num-seqs must be at least 1 (got {MaxNumSeqs})");
        Check(MaxNumBatchedTokens >= 1, $"--max-num-batched-tokens must be at least 1 (got {MaxNumBatchedTokens})");
        Check(ContextLength >= 2, $"--context-length must be at least 2 (got {ContextLength})");
        Check(SpeedupRatio > 0, $"--speedup-ratio must be positive (got {SpeedupRatio})");
        Check(Cost(StepMs), $"--step-ms must be a finite number of milliseconds, 0 or more (got {StepMs})");
        Check(Cost(PrefillMsPerToken), $"--prefill-ms-per-token must be a finite number of milliseconds, 0 or more (got {PrefillMsPerToken})");
        Check(Cost(AttentionMsPerTokenPair), $"--attention-ms-per-token-pair must be a finite number of milliseconds, 0 or more (got {AttentionMsPerTokenPair})");
        Check(Cost(DecodeMsPerSequence), $"--decode-ms-per-seq must be a finite number of milliseconds, 0 or more (got {DecodeMsPerSequence})");
        Check(double.IsFinite(MaxStepMs) && MaxStepMs >= 0, $"--max-step-ms must be a finite number of milliseconds, 0 (off) or more (got {MaxStepMs})");
        Check(VocabSize >= 1, $"--vocab-size must be at least 1 (got {VocabSize})");
        Check(EventHistory >= 1, $"the KV event history must hold at least one event (got {EventHistory})");
        Check(double.IsFinite(KvEventLoss) && KvEventLoss is >= 0 and <= 1, $"--kv-event-loss must be 0..1 (got {KvEventLoss})");
        return this;
    }

    /// <summary>
    /// Simulated duration of a step, already divided by <see cref="SpeedupRatio"/>.
    /// </summary>
    /// <param name="prefillTokens">Tokens of prefill chunks (prompt, or recomputation after preemption).</param>
    /// <param name="attentionPairs">Causal (query, key) pairs of those chunks.</param>
    /// <param name="decodingSequences">Sequences decoding one token.</param>
    public TimeSpan StepTime(long prefillTokens, long attentionPairs, int decodingSequences) =>
        Paced(StepMilliseconds(prefillTokens, attentionPairs, decodingSequences));

    /// <summary>What the clock waits for a step of <paramref name="ms"/> simulated milliseconds: divided by <see cref="SpeedupRatio"/>, to the tick.</summary>
    internal TimeSpan Paced(double ms)
    {
        double scaled = ms / SpeedupRatio;
        return scaled <= 0 ? TimeSpan.Zero : TimeSpan.FromTicks((long)Math.Round(scaled * TimeSpan.TicksPerMillisecond));
    }

    /// <summary>Simulated duration of a step in milliseconds, before <see cref="SpeedupRatio"/> (the parameters as <see cref="StepTime"/>'s).</summary>
    public double StepMilliseconds(long prefillTokens, long attentionPairs, int decodingSequences) =>
        StepMs + PrefillMsPerToken * prefillTokens + AttentionMsPerTokenPair * attentionPairs + DecodeMsPerSequence * decodingSequences;
}

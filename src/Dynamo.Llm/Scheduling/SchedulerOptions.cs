namespace Dynamo.Llm.Scheduling;

/// <summary>Limits of one scheduling step. Validated by <see cref="Validate"/>, whose messages name the flag.</summary>
public sealed record SchedulerOptions
{
    public static SchedulerOptions Default { get; } = new();

    /// <summary>Sequences in the running batch at most (<c>--max-num-seqs</c>).</summary>
    public int MaxNumSeqs { get; init; } = 128;

    /// <summary>Tokens one step computes at most, prefill chunks and decode tokens together (<c>--max-num-batched-tokens</c>).</summary>
    public int MaxNumBatchedTokens { get; init; } = 512;

    /// <summary>
    /// Step-time budget in milliseconds (<c>--max-step-ms</c>); 0 (the default here) turns it off. When on, and the
    /// engine's <see cref="StepCostModel"/> can predict, a step with decodes adds prefill tokens only while its predicted
    /// time stays within it (at least <see cref="MinPrefillTokens"/> of them; a step without decodes has no inter-token
    /// latency to protect and is bounded by <see cref="MaxNumBatchedTokens"/> only), and a new sequence is admitted only while the running
    /// batch, all decoding, plus a minimum chunk stays within it, or the batch is smaller than
    /// <see cref="StepCostModel.EfficientBatch"/>. Decoding sequences are always scheduled.
    /// </summary>
    public double MaxStepMs { get; init; }

    /// <summary>With <see cref="MaxStepMs"/>: prefill tokens a step may always add, whatever the budget says, so prefill never stops.</summary>
    public int MinPrefillTokens { get; init; } = 8;

    public SchedulerOptions Validate()
    {
        if (MaxNumSeqs < 1)
        {
            throw new ArgumentException($"--max-num-seqs must be at least 1 (got {MaxNumSeqs})");
        }

        if (MaxNumBatchedTokens < 1)
        {
            throw new ArgumentException($"--max-num-batched-tokens must be at least 1 (got {MaxNumBatchedTokens})");
        }

        if (!double.IsFinite(MaxStepMs) || MaxStepMs < 0)
        {
            throw new ArgumentException($"--max-step-ms must be a finite number of milliseconds, 0 (off) or more (got {MaxStepMs})");
        }

        if (MinPrefillTokens < 1)
        {
            throw new ArgumentException($"the minimum prefill of a step must be at least 1 token (got {MinPrefillTokens})");
        }

        return this;
    }
}

namespace Dynamo.Llm.Scheduling;

/// <summary>Limits of one scheduling step. Validated by <see cref="Validate"/>, whose messages name the flag.</summary>
public sealed record SchedulerOptions
{
    public static SchedulerOptions Default { get; } = new();

    /// <summary>Sequences in the running batch at most (<c>--max-num-seqs</c>).</summary>
    public int MaxNumSeqs { get; init; } = 128;

    /// <summary>Tokens one step computes at most, prefill chunks and decode tokens together (<c>--max-num-batched-tokens</c>).</summary>
    public int MaxNumBatchedTokens { get; init; } = 512;

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

        return this;
    }
}

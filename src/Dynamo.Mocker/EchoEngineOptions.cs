namespace Dynamo.Mocker;

/// <summary>Settings of <see cref="EchoEngine"/>.</summary>
public sealed record EchoEngineOptions
{
    /// <summary>The defaults: no delay, context 8192, block size 16, any token id, 256 sequences, a pool that never runs short.</summary>
    public static EchoEngineOptions Default { get; } = new();

    /// <summary>Wait before each step, that is before each output token of every running request (0: no wait).</summary>
    public TimeSpan TokenDelay { get; init; } = TimeSpan.Zero;

    /// <summary>Context window (<c>--context-length</c>): prompt and echo together; a longer prompt is refused.</summary>
    public int ContextLength { get; init; } = 8192;

    /// <summary>Tokens per KV block (<c>--block-size</c>).</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>When set, prompt token ids must be below it; else any id that is not negative.</summary>
    public int? VocabSize { get; init; }

    /// <summary>Requests echoed at once (<c>--max-num-seqs</c>); later ones wait.</summary>
    public int MaxNumSeqs { get; init; } = 256;

    /// <summary>
    /// KV pool size in blocks (<c>--num-gpu-blocks</c>). The echo engine stores nothing in them, but it schedules
    /// and preempts as the other engines do; null: enough for <see cref="MaxNumSeqs"/> sequences of the whole
    /// context, so it never preempts.
    /// </summary>
    public int? NumGpuBlocks { get; init; }

    /// <summary>The pool size in blocks, <see cref="NumGpuBlocks"/> or the default.</summary>
    internal int BlockCount => NumGpuBlocks ?? (int)Math.Min(int.MaxValue, (long)MaxNumSeqs * ((ContextLength + BlockSize - 1) / BlockSize));

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public EchoEngineOptions Validate()
    {
        if (TokenDelay < TimeSpan.Zero)
        {
            throw new ArgumentException($"TokenDelay {TokenDelay} must not be negative", nameof(TokenDelay));
        }

        if (ContextLength < 2)
        {
            throw new ArgumentException($"--context-length must be at least 2 (got {ContextLength})");
        }

        if (BlockSize < 1 || VocabSize is < 1 || MaxNumSeqs < 1 || NumGpuBlocks is < 1)
        {
            throw new ArgumentException("--block-size, --vocab-size, --max-num-seqs and --num-gpu-blocks must be positive");
        }

        return this;
    }
}

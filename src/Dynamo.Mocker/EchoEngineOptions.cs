namespace Dynamo.Mocker;

/// <summary>Settings of <see cref="EchoEngine"/>.</summary>
public sealed record EchoEngineOptions
{
    /// <summary>The defaults: no delay, context 8192, block size 16, any token id.</summary>
    public static EchoEngineOptions Default { get; } = new();

    /// <summary>Wait before each output token (0: as fast as the consumer reads).</summary>
    public TimeSpan TokenDelay { get; init; } = TimeSpan.Zero;

    /// <summary>Context window reported (a longer prompt is refused).</summary>
    public int ContextLength { get; init; } = 8192;

    /// <summary>Block size reported.</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>When set, prompt token ids must be below it.</summary>
    public int? VocabSize { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public EchoEngineOptions Validate()
    {
        if (TokenDelay < TimeSpan.Zero)
        {
            throw new ArgumentException($"TokenDelay {TokenDelay} must not be negative", nameof(TokenDelay));
        }

        if (ContextLength < 1 || BlockSize < 1 || VocabSize is < 1)
        {
            throw new ArgumentException("ContextLength, BlockSize and VocabSize must be positive");
        }

        return this;
    }
}

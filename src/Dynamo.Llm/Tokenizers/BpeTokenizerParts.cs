namespace Dynamo.Llm.Tokenizers;

/// <summary>Everything a loader decides about a <see cref="BpeTokenizer"/>.</summary>
internal sealed record BpeTokenizerParts
{
    public required BpeModel Model { get; init; }

    public TextNormalizer Normalizer { get; init; } = TextNormalizer.None;

    public PreTokenizer PreTokenizer { get; init; } = PreTokenizer.None;

    /// <summary>Added tokens recognized in the raw text, before normalization.</summary>
    public IReadOnlyList<(string Content, int Id)> RawAddedTokens { get; init; } = [];

    /// <summary>Added tokens recognized in normalized text (Hugging Face's normalized: true), in their normalized spelling.</summary>
    public IReadOnlyList<(string Content, int Id)> NormalizedAddedTokens { get; init; } = [];

    /// <summary>Ids put before the text when special tokens are added (BOS).</summary>
    public int[] Prefix { get; init; } = [];

    /// <summary>Ids put after the text when special tokens are added (EOS).</summary>
    public int[] Suffix { get; init; } = [];

    /// <summary>Each id's decoded bytes; null for ids without a piece. Its length is the vocabulary size.</summary>
    public required byte[]?[] Pieces { get; init; }

    public required bool[] FallbackByte { get; init; }

    public required bool[] Special { get; init; }

    public required DecodeRules Rules { get; init; }

    public int? BosTokenId { get; init; }

    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
}

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Text to token ids and back, with the special-token rules the model's own files state.
/// Implementations are immutable and thread-safe.
/// </summary>
public interface ITokenizer
{
    int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, or null when the model has none.</summary>
    int? BosTokenId { get; }

    /// <summary>Every id that ends generation (the EOS token, plus e.g. &lt;|eot_id|&gt; or &lt;|im_end|&gt;).</summary>
    IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>
    /// Encodes text. With <paramref name="addSpecialTokens"/> the model's rules apply (BOS prepended where
    /// the files say so), exactly as Hugging Face's <c>encode(text, add_special_tokens)</c>.
    /// </summary>
    IReadOnlyList<int> Encode(string text, bool addSpecialTokens);

    /// <summary>Decodes ids, as Hugging Face's <c>decode(ids, skip_special_tokens)</c>.</summary>
    string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens);

    /// <summary>True for control/special tokens (BOS, EOS, added special tokens).</summary>
    bool IsSpecial(int id);
}

using System.Text;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// The one tokenizer implementation behind every loader: added tokens are cut out of the text, the rest is
/// normalized, split into words and BPE-encoded; decoding joins each token's bytes under
/// <see cref="DecodeRules"/>. What differs between Hugging Face, GGUF and llama2.c files is only the data
/// and options the loaders put in. Immutable and thread-safe.
/// </summary>
internal sealed class BpeTokenizer : ITokenizer
{
    private readonly BpeModel _model;
    private readonly TextNormalizer _normalizer;
    private readonly PreTokenizer _preTokenizer;
    private readonly AddedTokenMatcher _rawAddedTokens;
    private readonly AddedTokenMatcher _normalizedAddedTokens;
    private readonly int[] _prefix;
    private readonly int[] _suffix;
    private readonly byte[]?[] _pieces;
    private readonly bool[] _fallbackByte;
    private readonly bool[] _special;

    public BpeTokenizer(BpeTokenizerParts parts)
    {
        _model = parts.Model;
        _normalizer = parts.Normalizer;
        _preTokenizer = parts.PreTokenizer;
        _rawAddedTokens = new AddedTokenMatcher(parts.RawAddedTokens);
        _normalizedAddedTokens = new AddedTokenMatcher(parts.NormalizedAddedTokens);
        _prefix = parts.Prefix;
        _suffix = parts.Suffix;
        _pieces = parts.Pieces;
        _fallbackByte = parts.FallbackByte;
        _special = parts.Special;
        Rules = parts.Rules;
        BosTokenId = parts.BosTokenId;
        EosTokenIds = parts.EosTokenIds;
    }

    public int VocabSize => _pieces.Length;

    public int? BosTokenId { get; }

    public IReadOnlyList<int> EosTokenIds { get; }

    internal DecodeRules Rules { get; }

    public bool IsSpecial(int id) => (uint)id < (uint)_special.Length && _special[id];

    /// <summary>The bytes token <paramref name="id"/> decodes to (before leading-space rules), or null for an id with no piece.</summary>
    internal byte[]? PieceBytes(int id) => (uint)id < (uint)_pieces.Length ? _pieces[id] : null;

    /// <summary>True for a byte-fallback token (&lt;0xXX&gt;) under <see cref="DecodeRules.AllOrNothingByteRuns"/>.</summary>
    internal bool IsFallbackByte(int id) => (uint)id < (uint)_fallbackByte.Length && _fallbackByte[id];

    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens)
        {
            ids.AddRange(_prefix);
        }

        if (_rawAddedTokens.IsEmpty)
        {
            EncodeSegment(text, ids);
        }
        else
        {
            _rawAddedTokens.Split(text, segment => EncodeSegment(segment, ids), ids.Add);
        }

        if (addSpecialTokens)
        {
            ids.AddRange(_suffix);
        }

        return ids;
    }

    public string Decode(IReadOnlyList<int> ids, bool skipSpecialTokens)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var text = new StringBuilder(ids.Count * 4);
        var bytes = new List<byte>();
        bool firstPiece = true;
        bool afterBos = false;
        foreach (int id in ids)
        {
            byte[]? piece = PieceBytes(id);
            bool previousWasBos = afterBos;
            afterBos = id == BosTokenId;
            if (piece is null || (skipSpecialTokens && IsSpecial(id)))
            {
                continue;
            }

            int skip = StripsLeadingSpace(firstPiece, previousWasBos) && piece.Length > 0 && piece[0] == (byte)' ' ? 1 : 0;
            firstPiece = false;
            if (Rules.AllOrNothingByteRuns && !IsFallbackByte(id))
            {
                AppendByteRun(text, bytes);
                text.Append(Encoding.UTF8.GetString(piece, skip, piece.Length - skip));
            }
            else
            {
                bytes.AddRange(piece.AsSpan(skip));
            }
        }

        if (Rules.AllOrNothingByteRuns)
        {
            AppendByteRun(text, bytes);
        }
        else
        {
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));
        }

        if (Rules.LeadingSpace == LeadingSpaceRule.StripOutputStart)
        {
            int strip = 0;
            while (strip < Rules.StripCount && strip < text.Length && text[strip] == ' ')
            {
                strip++;
            }

            text.Remove(0, strip);
        }

        return text.ToString();
    }

    /// <summary>Whether a piece in this position loses a leading space under the piece-level rules.</summary>
    internal bool StripsLeadingSpace(bool firstPiece, bool previousWasBos) => Rules.LeadingSpace switch
    {
        LeadingSpaceRule.StripFirstPiece => firstPiece,
        LeadingSpaceRule.StripAfterBos => previousWasBos,
        _ => false,
    };

    /// <summary>Hugging Face's ByteFallback: a run of byte tokens is its UTF-8 text, or one U+FFFD per byte if invalid.</summary>
    internal static void AppendByteRun(StringBuilder text, List<byte> run)
    {
        if (run.Count == 0)
        {
            return;
        }

        try
        {
            text.Append(StrictUtf8.GetString(run.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            text.Append('\uFFFD', run.Count);
        }

        run.Clear();
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private void EncodeSegment(string segment, List<int> ids)
    {
        string normalized = _normalizer.Apply(segment);
        if (_normalizedAddedTokens.IsEmpty)
        {
            _preTokenizer.Split(normalized, word => _model.EncodeWord(word, ids));
        }
        else
        {
            _normalizedAddedTokens.Split(normalized, part => _preTokenizer.Split(part, word => _model.EncodeWord(word, ids)), ids.Add);
        }
    }
}

using System.Text;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Turns a stream of generated token ids into text pieces for streaming responses. Everything returned
/// by <see cref="Push"/> and then <see cref="Flush"/>, concatenated, equals
/// <c>tokenizer.Decode(generatedIds, skipSpecialTokens)</c>, and no piece ends inside a UTF-8 sequence:
/// bytes of an unfinished character are held until it completes. Under Hugging Face's ByteFallback
/// decoder a whole run of &lt;0xXX&gt; tokens is held until the run ends, because one invalid byte turns
/// the entire run into U+FFFD. The text of a call is gathered in a buffer of its own, reused call after
/// call (<see cref="PushSpan"/> hands it out without a string). Not thread-safe: one instance per sequence.
/// </summary>
public sealed class IncrementalDetokenizer
{
    private readonly ITokenizer _tokenizer;
    private readonly BpeTokenizer? _bpe;
    private readonly bool _skipSpecialTokens;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private readonly List<byte> _byteRun = [];
    private readonly StringBuilder _run = new();
    private char[] _text = new char[64];
    private int _length;
    private readonly List<int> _ids = [];
    private bool _firstPiece = true;
    private bool _afterBos;
    private int _stripRemaining;
    private int _emitted;

    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="skipSpecialTokens">As in <see cref="ITokenizer.Decode"/>.</param>
    /// <param name="promptIds">
    /// Ids before the generated ones. They are not returned, but rules that depend on position (the
    /// leading space dropped at the start or after BOS) see them, as a decode of prompt and output together would.
    /// </param>
    public IncrementalDetokenizer(ITokenizer tokenizer, bool skipSpecialTokens, IReadOnlyList<int>? promptIds = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _bpe = tokenizer as BpeTokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _stripRemaining = _bpe?.Rules.LeadingSpace == LeadingSpaceRule.StripOutputStart ? _bpe.Rules.StripCount : 0;
        if (promptIds is not null)
        {
            foreach (int id in promptIds)
            {
                _ = PushSpan(id);
            }

            if (_bpe is null)
            {
                _emitted = _tokenizer.Decode(_ids, _skipSpecialTokens).Length;
            }
        }
    }

    /// <summary>Adds one token; returns the text it completes (often empty while a character is unfinished).</summary>
    public string Push(int tokenId) => AsString(PushSpan(tokenId));

    /// <summary>Ends the stream: returns held bytes, an unfinished character as U+FFFD.</summary>
    public string Flush() => AsString(FlushSpan());

    /// <summary>As <see cref="Push"/>, the text in a buffer valid until the next call.</summary>
    internal ReadOnlySpan<char> PushSpan(int tokenId)
    {
        if (_bpe is null)
        {
            return PushByRedecoding(tokenId);
        }

        byte[]? piece = _bpe.PieceBytes(tokenId);
        bool previousWasBos = _afterBos;
        _afterBos = tokenId == _bpe.BosTokenId;
        if (piece is null || (_skipSpecialTokens && _bpe.IsSpecial(tokenId)))
        {
            return [];
        }

        int skip = _bpe.StripsLeadingSpace(_firstPiece, previousWasBos) && piece.Length > 0 && piece[0] == (byte)' ' ? 1 : 0;
        _firstPiece = false;
        _length = 0;
        if (!_bpe.Rules.AllOrNothingByteRuns)
        {
            AppendDecoded(piece.AsSpan(skip), flush: false);
        }
        else if (_bpe.IsFallbackByte(tokenId))
        {
            _byteRun.Add(piece[0]);
        }
        else
        {
            AppendByteRun();
            ReadOnlySpan<byte> bytes = piece.AsSpan(skip);
            Encoding.UTF8.GetChars(bytes, Reserve(Encoding.UTF8.GetCharCount(bytes)));
        }

        return TakeText();
    }

    /// <summary>As <see cref="Flush"/>, the text in a buffer valid until the next call.</summary>
    internal ReadOnlySpan<char> FlushSpan()
    {
        if (_bpe is null)
        {
            string all = _tokenizer.Decode(_ids, _skipSpecialTokens);
            string rest = all.Length > _emitted ? all[_emitted..] : "";
            _emitted = all.Length;
            return rest;
        }

        _length = 0;
        AppendDecoded([], flush: true);
        AppendByteRun();
        return TakeText();
    }

    private static string AsString(ReadOnlySpan<char> text) => text.IsEmpty ? "" : new string(text);

    private void AppendDecoded(ReadOnlySpan<byte> bytes, bool flush)
    {
        int count = _utf8.GetCharCount(bytes, flush);
        if (count == 0 && bytes.IsEmpty && !flush)
        {
            return;
        }

        _utf8.GetChars(bytes, Reserve(count), flush);
    }

    /// <summary>A held run of byte-fallback tokens, decoded (rare: the byte-run rule of some tokenizers).</summary>
    private void AppendByteRun()
    {
        if (_byteRun.Count == 0)
        {
            return;
        }

        _run.Clear();
        BpeTokenizer.AppendByteRun(_run, _byteRun);
        foreach (ReadOnlyMemory<char> chunk in _run.GetChunks())
        {
            chunk.Span.CopyTo(Reserve(chunk.Length));
        }
    }

    /// <summary><paramref name="count"/> more characters at the end of the call's text.</summary>
    private Span<char> Reserve(int count)
    {
        if (_text.Length < _length + count)
        {
            Array.Resize(ref _text, Math.Max(_length + count, 2 * _text.Length));
        }

        Span<char> reserved = _text.AsSpan(_length, count);
        _length += count;
        return reserved;
    }

    /// <summary>The text gathered for this call, minus spaces a Strip decoder removes at the start of the output.</summary>
    private ReadOnlySpan<char> TakeText()
    {
        int strip = 0;
        while (_stripRemaining > 0 && strip < _length && _text[strip] == ' ')
        {
            strip++;
            _stripRemaining--;
        }

        if (strip < _length)
        {
            _stripRemaining = 0;
        }

        return _text.AsSpan(strip, _length - strip);
    }

    /// <summary>For tokenizers of unknown kind: decode everything again and return what is new and complete.</summary>
    private string PushByRedecoding(int tokenId)
    {
        _ids.Add(tokenId);
        string all = _tokenizer.Decode(_ids, _skipSpecialTokens);
        if (all.Length <= _emitted || all.EndsWith('\uFFFD'))
        {
            return "";
        }

        string fresh = all[_emitted..];
        _emitted = all.Length;
        return fresh;
    }
}

using System.Collections.Concurrent;
using System.Text;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Turns one word (a piece of text after normalization and pre-tokenization) into token ids: split it
/// into initial symbols, then apply <see cref="BpeMerges"/>.
/// Byte-level models start from one symbol per UTF-8 byte. Character models (SentencePiece style) start
/// from one symbol per code point; a code point missing from the vocabulary becomes its UTF-8 bytes as
/// byte-fallback tokens when the model has them, else the unknown token (consecutive unknowns fused
/// into one when <see cref="FuseUnknown"/>).
/// </summary>
internal sealed class BpeModel
{
    private const int CacheLimit = 50_000;
    private const int CachedWordLength = 64;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly int[]? _byteIds;

    /// <param name="vocab">Piece -> id, for the pieces text can be split into.</param>
    /// <param name="merges">The merge table.</param>
    /// <param name="byteLevel">Byte-level (GPT-2) symbols instead of code points.</param>
    /// <param name="byteFallbackIds">For character models: the id of each byte's &lt;0xXX&gt; token, or null.</param>
    public BpeModel(Dictionary<string, int> vocab, BpeMerges merges, bool byteLevel, int[]? byteFallbackIds)
    {
        _vocab = vocab;
        _lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        Merges = merges;
        ByteLevel = byteLevel;
        if (byteLevel)
        {
            _byteIds = new int[256];
            for (int b = 0; b < 256; b++)
            {
                _byteIds[b] = vocab.TryGetValue(ByteLevelAlphabet.CharOf((byte)b).ToString(), out int id) ? id : -1;
            }
        }
        else
        {
            _byteIds = byteFallbackIds;
        }
    }

    public BpeMerges Merges { get; }

    public bool ByteLevel { get; }

    public int? UnknownId { get; init; }

    public bool FuseUnknown { get; init; }

    /// <summary>Hugging Face's ignore_merges: a word that is itself in the vocabulary is one token.</summary>
    public bool IgnoreMerges { get; init; }

    public void EncodeWord(string word, List<int> output)
    {
        if (word.Length == 0)
        {
            return;
        }

        bool cacheable = word.Length <= CachedWordLength;
        if (cacheable && _cache.TryGetValue(word, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }

        int start = output.Count;
        if (ByteLevel)
        {
            AddByteLevelSymbols(word, output);
        }
        else
        {
            AddCharacterSymbols(word, output);
        }

        if (!(IgnoreMerges && output.Count - start == 1))
        {
            Merges.MergeInPlace(output, start);
        }

        if (cacheable)
        {
            if (_cache.Count >= CacheLimit)
            {
                _cache.Clear();
            }

            _cache.TryAdd(word, output.GetRange(start, output.Count - start).ToArray());
        }
    }

    private void AddByteLevelSymbols(string word, List<int> output)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(word);
        if (IgnoreMerges && _vocab.TryGetValue(ByteLevelAlphabet.Encode(bytes), out int whole))
        {
            output.Add(whole);
            return;
        }

        foreach (byte b in bytes)
        {
            int id = _byteIds![b];
            if (id >= 0)
            {
                output.Add(id);
            }
            else if (UnknownId is int unk)
            {
                output.Add(unk);
            }
        }
    }

    private void AddCharacterSymbols(string word, List<int> output)
    {
        if (IgnoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            output.Add(whole);
            return;
        }

        bool previousUnknown = false;
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < word.Length;)
        {
            int length = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var symbol = word.AsSpan(i, length);
            i += length;
            if (_lookup.TryGetValue(symbol, out int id))
            {
                output.Add(id);
                previousUnknown = false;
                continue;
            }

            if (_byteIds is not null)
            {
                int count = Encoding.UTF8.GetBytes(symbol, utf8);
                for (int k = 0; k < count; k++)
                {
                    output.Add(_byteIds[utf8[k]]);
                }

                previousUnknown = false;
                continue;
            }

            if (UnknownId is int unk && !(FuseUnknown && previousUnknown))
            {
                output.Add(unk);
            }

            previousUnknown = true;
        }
    }
}

using System.Text;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Builds a <see cref="BpeTokenizer"/> from GGUF tokenizer metadata: "llama" (SentencePiece BPE with scores
/// and byte fallback, decoded like llama.cpp) or "gpt2" (byte-level BPE with merges and a pre-tokenizer
/// regex chosen by tokenizer.ggml.pre).
/// </summary>
internal static class GgufTokenizerReader
{
    private const int TypeNormal = 1;
    private const int TypeUnknown = 2;
    private const int TypeControl = 3;
    private const int TypeUserDefined = 4;
    private const int TypeByte = 6;

    public static BpeTokenizer Read(IReadOnlyDictionary<string, object> metadata, string sourcePath, bool recognizeControlTokensInText)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        try
        {
            return Build(metadata, recognizeControlTokensInText);
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException or KeyNotFoundException or IndexOutOfRangeException or NotSupportedException)
        {
            throw new ModelFormatException(sourcePath, $"bad tokenizer metadata: {e.Message.Split('\n')[0]}", e);
        }
    }

    private static BpeTokenizer Build(IReadOnlyDictionary<string, object> metadata, bool recognizeControlTokensInText)
    {
        string model = Get(metadata, "tokenizer.ggml.model") as string ?? throw new NotSupportedException("tokenizer.ggml.model is missing");
        string[] tokens = (Get(metadata, "tokenizer.ggml.tokens") as IEnumerable<string>)?.ToArray() ?? throw new KeyNotFoundException("tokenizer.ggml.tokens is missing");
        int n = tokens.Length;
        int[] types = IntArray(metadata, "tokenizer.ggml.token_type") ?? Enumerable.Repeat(TypeNormal, n).ToArray();
        float[] scores = Get(metadata, "tokenizer.ggml.scores") is Array s ? s.Cast<object>().Select(Convert.ToSingle).ToArray() : new float[n];
        if (types.Length != n || scores.Length != n)
        {
            throw new FormatException($"{n} tokens but {types.Length} token types and {scores.Length} scores");
        }

        bool spm = model switch
        {
            "llama" => true,
            "gpt2" => false,
            _ => throw new NotSupportedException($"tokenizer.ggml.model '{model}' (supported: llama, gpt2)"),
        };

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < n; id++)
        {
            if (types[id] is TypeNormal or TypeUserDefined or 0 || !spm)
            {
                vocab.TryAdd(tokens[id], id);
            }
        }

        var pieces = new byte[]?[n];
        var special = new bool[n];
        for (int id = 0; id < n; id++)
        {
            special[id] = types[id] == TypeControl;
            pieces[id] = types[id] switch
            {
                TypeControl or TypeUserDefined => Encoding.UTF8.GetBytes(tokens[id]),
                TypeByte when HfTokenizerJsonReader.TryParseByteToken(tokens[id], out byte b) => [b],
                TypeUnknown when spm => "\u2585"u8.ToArray(), // llama.cpp prints U+2585 for the unknown token
                _ => spm ? Encoding.UTF8.GetBytes(tokens[id].Replace('\u2581', ' ')) : ByteLevelAlphabet.Decode(tokens[id]),
            };
        }

        BpeModel bpe;
        TextNormalizer normalizer;
        PreTokenizer preTokenizer;
        int? unknownId = OptionalInt(metadata, "tokenizer.ggml.unknown_token_id") ?? IndexOf(types, TypeUnknown);
        if (spm)
        {
            var byteIds = Enumerable.Range(0, 256).Select(value => Array.IndexOf(tokens, $"<0x{value:X2}>")).ToArray();
            var mergeable = tokens.Select((t, id) => types[id] is TypeNormal or TypeUserDefined or 0 ? t : null).ToArray();
            bpe = new BpeModel(vocab, BpeMerges.FromScores(mergeable, scores, vocab), byteLevel: false, byteIds.All(id => id >= 0) ? byteIds : null)
            {
                UnknownId = unknownId,
            };
            bool addSpacePrefix = OptionalBool(metadata, "tokenizer.ggml.add_space_prefix") ?? true;
            normalizer = addSpacePrefix
                ? TextNormalizer.Of(TextNormalizer.Prepend(" "), TextNormalizer.Replace(" ", "\u2581"))
                : TextNormalizer.Of(TextNormalizer.Replace(" ", "\u2581"));
            preTokenizer = PreTokenizer.None;
        }
        else
        {
            var merges = (Get(metadata, "tokenizer.ggml.merges") as IEnumerable<string> ?? throw new KeyNotFoundException("tokenizer.ggml.merges is missing"))
                .Select(m => m.IndexOf(' ', StringComparison.Ordinal) is int i and > 0 ? (m[..i], m[(i + 1)..]) : throw new FormatException($"merge '{m}' is not 'a b'"))
                .ToList();
            bpe = new BpeModel(vocab, BpeMerges.FromRankedMerges(merges, vocab), byteLevel: true, null);
            normalizer = TextNormalizer.None;
            preTokenizer = new PreTokenizer(PrePatterns(Get(metadata, "tokenizer.ggml.pre") as string));
        }

        int? bos = OptionalInt(metadata, "tokenizer.ggml.bos_token_id");
        int? eos = OptionalInt(metadata, "tokenizer.ggml.eos_token_id");
        bool addBos = OptionalBool(metadata, "tokenizer.ggml.add_bos_token") ?? spm;
        bool addEos = OptionalBool(metadata, "tokenizer.ggml.add_eos_token") ?? false;
        // Besides the EOS/EOT/EOM ids the file names, end-of-turn control tokens end generation too, as
        // llama.cpp treats them: chat models often name only <|end_of_text|>-style EOS in their metadata.
        IEnumerable<int?> endOfTurn = Enumerable.Range(0, n)
            .Where(id => types[id] == TypeControl && EndOfTurnTokens.Contains(tokens[id]))
            .Select(id => (int?)id);
        var eosIds = new[] { eos, OptionalInt(metadata, "tokenizer.ggml.eot_token_id"), OptionalInt(metadata, "tokenizer.ggml.eom_token_id") }
            .Concat(endOfTurn).OfType<int>().Distinct().ToList();

        return new BpeTokenizer(new BpeTokenizerParts
        {
            Model = bpe,
            Normalizer = normalizer,
            PreTokenizer = preTokenizer,
            RawAddedTokens = Enumerable.Range(0, n)
                .Where(id => types[id] == TypeUserDefined || (recognizeControlTokensInText && types[id] == TypeControl))
                .Select(id => (tokens[id], id)).ToList(),
            Prefix = addBos && bos is int bosId ? [bosId] : [],
            Suffix = addEos && eos is int eosId ? [eosId] : [],
            Pieces = pieces,
            FallbackByte = new bool[n],
            Special = special,
            Rules = spm ? new DecodeRules(false, LeadingSpaceRule.StripFirstPiece) : DecodeRules.ByteStream,
            BosTokenId = bos,
            EosTokenIds = eosIds,
        });
    }

    /// <summary>Texts of control tokens that end a turn in common chat formats (Llama 3, ChatML/Qwen, Phi, Gemma).</summary>
    private static readonly HashSet<string> EndOfTurnTokens = ["<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"];

    /// <summary>llama.cpp's pre-tokenizer regexes for the tokenizer.ggml.pre names it knows.</summary>
    private static string[] PrePatterns(string? pre) => pre switch
    {
        null or "default" or "gpt2" or "gpt-2" => [PreTokenizer.Gpt2Pattern],
        "llama-bpe" or "llama3" or "smaug-bpe" => [PreTokenizer.Llama3Pattern],
        "qwen2" or "deepseek-r1-qwen" => [PreTokenizer.Qwen2Pattern],
        "smollm" or "starcoder" or "refact" or "command-r" or "codeshell" or "exaone" or "minerva-7b" => [@"\p{N}", PreTokenizer.Gpt2Pattern],
        _ => throw new NotSupportedException($"tokenizer.ggml.pre '{pre}'"),
    };

    private static object? Get(IReadOnlyDictionary<string, object> metadata, string key) => metadata.TryGetValue(key, out var v) ? v : null;

    private static int? OptionalInt(IReadOnlyDictionary<string, object> metadata, string key) =>
        Get(metadata, key) is { } v ? Convert.ToInt32(v, System.Globalization.CultureInfo.InvariantCulture) : null;

    private static bool? OptionalBool(IReadOnlyDictionary<string, object> metadata, string key) =>
        Get(metadata, key) is { } v ? Convert.ToBoolean(v, System.Globalization.CultureInfo.InvariantCulture) : null;

    private static int[]? IntArray(IReadOnlyDictionary<string, object> metadata, string key) =>
        Get(metadata, key) is Array a ? a.Cast<object>().Select(x => Convert.ToInt32(x, System.Globalization.CultureInfo.InvariantCulture)).ToArray() : null;

    private static int? IndexOf(int[] types, int type) => Array.IndexOf(types, type) is int i and >= 0 ? i : null;
}

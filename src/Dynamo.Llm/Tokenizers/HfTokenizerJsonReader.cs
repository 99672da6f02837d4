using System.Text;
using System.Text.Json;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Llm.Tokenizers;

/// <summary>
/// Builds a <see cref="BpeTokenizer"/> from a Hugging Face tokenizer.json (BPE model; byte-level or
/// SentencePiece-style with byte fallback), plus tokenizer_config.json and generation_config.json beside it.
/// </summary>
internal static class HfTokenizerJsonReader
{
    public static BpeTokenizer Read(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "tokenizer.json") : path;
        if (!File.Exists(file))
        {
            throw new ModelFormatException(file, "tokenizer file not found");
        }

        string folder = Path.GetDirectoryName(Path.GetFullPath(file))!;
        try
        {
            using var tokenizerJson = JsonDocument.Parse(File.ReadAllBytes(file));
            using var config = ReadOptionalJson(Path.Combine(folder, "tokenizer_config.json"));
            using var generation = ReadOptionalJson(Path.Combine(folder, "generation_config.json"));
            return Build(tokenizerJson.RootElement, config?.RootElement, generation?.RootElement);
        }
        catch (ModelFormatException)
        {
            throw;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
        {
            throw new ModelFormatException(file, $"malformed tokenizer: {FirstLine(e.Message)}", e);
        }
        catch (NotSupportedException e)
        {
            throw new ModelFormatException(file, $"unsupported tokenizer: {e.Message}", e);
        }
    }

    private static JsonDocument? ReadOptionalJson(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"not valid JSON: {FirstLine(e.Message)}", e);
        }
    }

    private static BpeTokenizer Build(JsonElement root, JsonElement? config, JsonElement? generation)
    {
        var model = root.GetProperty("model");
        string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "BPE";
        if (type != "BPE")
        {
            throw new NotSupportedException($"model type '{type}' (only BPE is supported)");
        }

        if (NonEmptyString(model, "continuing_subword_prefix") || NonEmptyString(model, "end_of_word_suffix"))
        {
            throw new NotSupportedException("continuing_subword_prefix / end_of_word_suffix");
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in model.GetProperty("vocab").EnumerateObject())
        {
            vocab[entry.Name] = entry.Value.GetInt32();
        }

        var merges = new List<(string, string)>();
        foreach (var m in model.GetProperty("merges").EnumerateArray())
        {
            if (m.ValueKind == JsonValueKind.Array)
            {
                merges.Add((m[0].GetString()!, m[1].GetString()!));
            }
            else
            {
                string s = m.GetString()!;
                int space = s.IndexOf(' ', StringComparison.Ordinal);
                merges.Add(space > 0 ? (s[..space], s[(space + 1)..]) : throw new FormatException($"merge '{s}' is not 'a b'"));
            }
        }

        var added = root.TryGetProperty("added_tokens", out var at) && at.ValueKind == JsonValueKind.Array
            ? at.EnumerateArray().Select(a => new AddedToken(
                a.GetProperty("content").GetString()!,
                a.GetProperty("id").GetInt32(),
                Bool(a, "special"),
                Bool(a, "normalized"))).ToList()
            : [];

        var normalizer = ReadNormalizer(root.GetProperty("normalizer"));
        bool byteLevel = false;
        var patterns = new List<string>();
        ReadPreTokenizer(root.GetProperty("pre_tokenizer"), patterns, ref byteLevel, ref normalizer);
        var (rules, decodeToken) = ReadDecoder(root.GetProperty("decoder"));

        int[]? byteFallbackIds = null;
        if (Bool(model, "byte_fallback"))
        {
            var ids = Enumerable.Range(0, 256).Select(b => vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1).ToArray();
            byteFallbackIds = ids.All(id => id >= 0) ? ids : null;
        }

        int? unknownId = model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String && vocab.TryGetValue(unk.GetString()!, out int u) ? u : null;
        var bpe = new BpeModel(vocab, BpeMerges.FromRankedMerges(merges, vocab), byteLevel, byteFallbackIds)
        {
            UnknownId = unknownId,
            FuseUnknown = Bool(model, "fuse_unk"),
            IgnoreMerges = Bool(model, "ignore_merges"),
        };

        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);
        var tokens = new string?[size];
        foreach (var (piece, id) in vocab)
        {
            tokens[id] = piece;
        }

        var special = new bool[size];
        foreach (var a in added)
        {
            tokens[a.Id] = a.Content;
            special[a.Id] = a.Special;
        }

        var pieces = new byte[]?[size];
        var fallbackByte = new bool[size];
        for (int id = 0; id < size; id++)
        {
            if (tokens[id] is string token)
            {
                (pieces[id], fallbackByte[id]) = decodeToken(token);
            }
        }

        int? TokenId(string? content)
        {
            if (content is null)
            {
                return null;
            }

            if (added.FirstOrDefault(a => a.Content == content) is { } hit)
            {
                return hit.Id;
            }

            return vocab.TryGetValue(content, out int id) ? id : null;
        }

        var (prefix, suffix) = ReadPostProcessor(root.GetProperty("post_processor"), TokenId, config);
        int? bos = TokenId(SpecialTokenContent(config, "bos_token"))
            ?? (prefix.Length > 0 ? prefix[0] : (int?)null)
            ?? IntOrNull(generation, "bos_token_id");
        var eos = new List<int>();
        if (generation is JsonElement g && g.TryGetProperty("eos_token_id", out var e))
        {
            eos.AddRange(e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt32()) : [e.GetInt32()]);
        }

        if (TokenId(SpecialTokenContent(config, "eos_token")) is int configEos && !eos.Contains(configEos))
        {
            eos.Add(configEos);
        }

        return new BpeTokenizer(new BpeTokenizerParts
        {
            Model = bpe,
            Normalizer = normalizer,
            PreTokenizer = new PreTokenizer(patterns),
            RawAddedTokens = added.Where(a => !a.Normalized || normalizer.IsIdentity).Select(a => (a.Content, a.Id)).ToList(),
            NormalizedAddedTokens = added.Where(a => a.Normalized && !normalizer.IsIdentity).Select(a => (normalizer.Apply(a.Content), a.Id)).ToList(),
            Prefix = prefix,
            Suffix = suffix,
            Pieces = pieces,
            FallbackByte = fallbackByte,
            Special = special,
            Rules = rules,
            BosTokenId = bos,
            EosTokenIds = eos,
        });
    }

    private static TextNormalizer ReadNormalizer(JsonElement n)
    {
        if (n.ValueKind == JsonValueKind.Null)
        {
            return TextNormalizer.None;
        }

        string type = n.GetProperty("type").GetString()!;
        return type switch
        {
            "Sequence" => TextNormalizer.Sequence(n.GetProperty("normalizers").EnumerateArray().Select(ReadNormalizer)),
            "NFC" => TextNormalizer.Of(CanonicalNormalizer.ToNfc),
            "NFD" => TextNormalizer.Of(CanonicalNormalizer.ToNfd),
            "NFKC" => TextNormalizer.Of(TextNormalizer.UnicodeForm(NormalizationForm.FormKC)),
            "NFKD" => TextNormalizer.Of(TextNormalizer.UnicodeForm(NormalizationForm.FormKD)),
            "Lowercase" => TextNormalizer.Of(s => s.ToLowerInvariant()),
            "Prepend" => TextNormalizer.Of(TextNormalizer.Prepend(n.GetProperty("prepend").GetString()!)),
            "Replace" => TextNormalizer.Of(TextNormalizer.Replace(StringPattern(n), n.GetProperty("content").GetString()!)),
            _ => throw new NotSupportedException($"normalizer '{type}'"),
        };
    }

    private static void ReadPreTokenizer(JsonElement p, List<string> patterns, ref bool byteLevel, ref TextNormalizer normalizer)
    {
        if (p.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        string type = p.GetProperty("type").GetString()!;
        switch (type)
        {
            case "Sequence":
                foreach (var inner in p.GetProperty("pretokenizers").EnumerateArray())
                {
                    ReadPreTokenizer(inner, patterns, ref byteLevel, ref normalizer);
                }

                break;
            case "Split":
                if (p.TryGetProperty("invert", out var invert) && invert.GetBoolean() || p.GetProperty("behavior").GetString() != "Isolated")
                {
                    throw new NotSupportedException("Split pre-tokenizer other than behavior Isolated, invert false");
                }

                var pattern = p.GetProperty("pattern");
                patterns.Add(pattern.TryGetProperty("Regex", out var regex) ? regex.GetString()! : System.Text.RegularExpressions.Regex.Escape(pattern.GetProperty("String").GetString()!));
                break;
            case "ByteLevel":
                byteLevel = true;
                if (!p.TryGetProperty("use_regex", out var useRegex) || useRegex.GetBoolean())
                {
                    patterns.Add(PreTokenizer.Gpt2Pattern);
                }

                if (Bool(p, "add_prefix_space"))
                {
                    normalizer = TextNormalizer.Sequence([normalizer, TextNormalizer.Of(PrependIfNoSpace)]);
                }

                break;
            case "Digits":
                patterns.Add(Bool(p, "individual_digits") ? @"\p{N}" : @"\p{N}+");
                break;
            case "Metaspace":
                string replacement = p.GetProperty("replacement").GetString()!;
                string scheme = p.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString()! : Bool(p, "add_prefix_space") ? "always" : "never";
                var steps = new List<Func<string, string>> { TextNormalizer.Replace(" ", replacement) };
                if (scheme != "never")
                {
                    steps.Add(s => s.StartsWith(replacement, StringComparison.Ordinal) ? s : TextNormalizer.Prepend(replacement)(s));
                }

                normalizer = TextNormalizer.Sequence([normalizer, TextNormalizer.Of([.. steps])]);
                if (!p.TryGetProperty("split", out var split) || split.GetBoolean())
                {
                    string r = System.Text.RegularExpressions.Regex.Escape(replacement);
                    patterns.Add($"{r}[^{r}]*|[^{r}]+");
                }

                break;
            default:
                throw new NotSupportedException($"pre_tokenizer '{type}'");
        }
    }

    private static string PrependIfNoSpace(string s) => s.Length == 0 || s[0] == ' ' ? s : " " + s;

    private static (DecodeRules Rules, Func<string, (byte[], bool)> DecodeToken) ReadDecoder(JsonElement d)
    {
        if (d.ValueKind == JsonValueKind.Null)
        {
            return (DecodeRules.ByteStream, token => (Encoding.UTF8.GetBytes(token), false));
        }

        var steps = d.GetProperty("type").GetString() == "Sequence" ? d.GetProperty("decoders").EnumerateArray().ToList() : [d];
        var replaces = new List<(string, string)>();
        bool byteLevel = false, byteFallback = false;
        var rule = LeadingSpaceRule.None;
        int stripCount = 0;
        foreach (var step in steps)
        {
            string type = step.GetProperty("type").GetString()!;
            switch (type)
            {
                case "ByteLevel":
                    byteLevel = true;
                    break;
                case "Replace":
                    replaces.Add((StringPattern(step), step.GetProperty("content").GetString()!));
                    break;
                case "ByteFallback":
                    byteFallback = true;
                    break;
                case "Fuse":
                    break;
                case "Strip":
                    if (step.GetProperty("stop").GetInt32() != 0)
                    {
                        throw new NotSupportedException("Strip decoder with stop > 0");
                    }

                    (rule, stripCount) = (LeadingSpaceRule.StripOutputStart, step.GetProperty("start").GetInt32());
                    break;
                case "Metaspace":
                    replaces.Add((step.GetProperty("replacement").GetString()!, " "));
                    string scheme = step.TryGetProperty("prepend_scheme", out var ps) ? ps.GetString()! : Bool(step, "add_prefix_space") ? "always" : "never";
                    rule = scheme == "never" ? rule : LeadingSpaceRule.StripFirstPiece;
                    break;
                default:
                    throw new NotSupportedException($"decoder '{type}'");
            }
        }

        var rules = new DecodeRules(byteFallback, rule, stripCount);
        return (rules, token =>
        {
            if (byteLevel)
            {
                return (ByteLevelAlphabet.Decode(token), false);
            }

            foreach (var (pattern, content) in replaces)
            {
                token = token.Replace(pattern, content, StringComparison.Ordinal);
            }

            return byteFallback && TryParseByteToken(token, out byte b) ? ([b], true) : (Encoding.UTF8.GetBytes(token), false);
        });
    }

    /// <summary>"&lt;0xXX&gt;" -> the byte XX.</summary>
    internal static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out value);
    }

    private static (int[] Prefix, int[] Suffix) ReadPostProcessor(JsonElement p, Func<string?, int?> tokenId, JsonElement? config)
    {
        JsonElement? template = null;
        if (p.ValueKind == JsonValueKind.Object)
        {
            var processors = p.GetProperty("type").GetString() == "Sequence" ? p.GetProperty("processors").EnumerateArray().ToList() : [p];
            foreach (var processor in processors)
            {
                string type = processor.GetProperty("type").GetString()!;
                if (type == "TemplateProcessing")
                {
                    template = processor;
                }
                else if (type != "ByteLevel")
                {
                    throw new NotSupportedException($"post_processor '{type}'");
                }
            }
        }

        if (template is not JsonElement tp)
        {
            int[] bos = ConfigBool(config, "add_bos_token") && tokenId(SpecialTokenContent(config, "bos_token")) is int b ? [b] : [];
            int[] eos = ConfigBool(config, "add_eos_token") && tokenId(SpecialTokenContent(config, "eos_token")) is int e ? [e] : [];
            return (bos, eos);
        }

        var specials = tp.GetProperty("special_tokens");
        var prefix = new List<int>();
        var suffix = new List<int>();
        bool seenSequence = false;
        foreach (var item in tp.GetProperty("single").EnumerateArray())
        {
            if (item.TryGetProperty("Sequence", out _))
            {
                seenSequence = true;
                continue;
            }

            string name = item.GetProperty("SpecialToken").GetProperty("id").GetString()!;
            var ids = specials.GetProperty(name).GetProperty("ids").EnumerateArray().Select(x => x.GetInt32());
            (seenSequence ? suffix : prefix).AddRange(ids);
        }

        return (prefix.ToArray(), suffix.ToArray());
    }

    private static string StringPattern(JsonElement step)
    {
        var pattern = step.GetProperty("pattern");
        return pattern.TryGetProperty("String", out var s) ? s.GetString()! : throw new NotSupportedException("regex Replace");
    }

    private static string? SpecialTokenContent(JsonElement? config, string name)
    {
        if (config is not JsonElement c || !c.TryGetProperty(name, out var v))
        {
            return null;
        }

        return v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object => v.GetProperty("content").GetString(),
            _ => null,
        };
    }

    private static int? IntOrNull(JsonElement? e, string name) =>
        e is JsonElement x && x.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    private static bool ConfigBool(JsonElement? e, string name) => e is JsonElement x && Bool(x, name);

    private static bool Bool(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    private static bool NonEmptyString(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0;

    private static string FirstLine(string message) => message.Split('\n')[0].Trim();

    private sealed record AddedToken(string Content, int Id, bool Special, bool Normalized);
}

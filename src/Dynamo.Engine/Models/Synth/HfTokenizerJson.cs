using System.Text.Encodings.Web;
using System.Text.Json;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// The Hugging Face tokenizer files of a SentencePiece-style vocabulary (as LlamaTokenizerFast): tokenizer.json
/// with a BPE model (byte_fallback, fuse_unk, merges derived from the scores), the Llama normalizer
/// (prepend "▁", spaces to "▁"), a BOS post-processor and the matching decoder; and tokenizer_config.json.
/// </summary>
internal static class HfTokenizerJson
{
    private static readonly JsonWriterOptions WriterOptions = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// BPE merges that reproduce SentencePiece's score-driven merging, derived as Hugging Face's converter
    /// (SentencePieceExtractor) does: for every piece, every split into two pieces both in the vocabulary
    /// (ordered by the ids of left then right), all sorted by the score of the merged piece, highest first (stable).
    /// Splits are by Unicode code point, as Python slices strings.
    /// </summary>
    public static List<(string Left, string Right)> DeriveMerges(SynthVocabulary vocabulary)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < vocabulary.Count; i++)
        {
            ids[vocabulary.Pieces[i]] = i;
        }

        var merges = new List<(string Left, string Right, float Score)>();
        var local = new List<(string Left, string Right, int LeftId, int RightId)>();
        var boundaries = new List<int>();
        for (int i = 0; i < vocabulary.Count; i++)
        {
            string piece = vocabulary.Pieces[i];
            boundaries.Clear();
            for (int k = 1; k < piece.Length; k++)
            {
                if (!char.IsLowSurrogate(piece[k]))
                {
                    boundaries.Add(k);
                }
            }

            local.Clear();
            foreach (int k in boundaries)
            {
                string left = piece[..k], right = piece[k..];
                if (ids.TryGetValue(left, out int l) && ids.TryGetValue(right, out int r))
                {
                    local.Add((left, right, l, r));
                }
            }

            foreach (var m in local.OrderBy(m => m.LeftId).ThenBy(m => m.RightId))
            {
                merges.Add((m.Left, m.Right, vocabulary.Scores[i]));
            }
        }

        return merges.OrderByDescending(m => m.Score).Select(m => (m.Left, m.Right)).ToList();
    }

    public static void WriteTokenizerJson(SynthVocabulary vocabulary, Stream output)
    {
        using var w = new Utf8JsonWriter(output, WriterOptions);
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        foreach (int id in new[] { vocabulary.UnknownId, vocabulary.BosId, vocabulary.EosId })
        {
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", vocabulary.Pieces[id]);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }

        w.WriteEndArray();

        w.WriteStartObject("normalizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("normalizers");
        w.WriteStartObject();
        w.WriteString("type", "Prepend");
        w.WriteString("prepend", "\u2581");
        w.WriteEndObject();
        WriteReplace(w, " ", "\u2581");
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteNull("pre_tokenizer");

        string bos = vocabulary.Pieces[vocabulary.BosId];
        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        w.WriteStartArray("single");
        WriteSpecial(w, bos, 0);
        WriteSequence(w, "A", 0);
        w.WriteEndArray();
        w.WriteStartArray("pair");
        WriteSpecial(w, bos, 0);
        WriteSequence(w, "A", 0);
        WriteSpecial(w, bos, 1);
        WriteSequence(w, "B", 1);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        w.WriteStartObject(bos);
        w.WriteString("id", bos);
        w.WriteStartArray("ids");
        w.WriteNumberValue(vocabulary.BosId);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        w.WriteStringValue(bos);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();

        w.WriteStartObject("decoder");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("decoders");
        WriteReplace(w, "\u2581", " ");
        w.WriteStartObject();
        w.WriteString("type", "ByteFallback");
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "Fuse");
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "Strip");
        w.WriteString("content", " ");
        w.WriteNumber("start", 1);
        w.WriteNumber("stop", 0);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();

        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteString("unk_token", vocabulary.Pieces[vocabulary.UnknownId]);
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", true);
        w.WriteBoolean("byte_fallback", true);
        w.WriteStartObject("vocab");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < vocabulary.Count; i++)
        {
            if (seen.Add(vocabulary.Pieces[i]))
            {
                w.WriteNumber(vocabulary.Pieces[i], i);
            }
        }

        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach (var (left, right) in DeriveMerges(vocabulary))
        {
            // "left right", the classic form every tokenizers version reads (pieces hold "▁", never a space).
            w.WriteStringValue(left + " " + right);
        }

        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public static void WriteTokenizerConfig(SynthVocabulary vocabulary, Stream output)
    {
        using var w = new Utf8JsonWriter(output, WriterOptions);
        w.WriteStartObject();
        w.WriteBoolean("add_bos_token", true);
        w.WriteBoolean("add_eos_token", false);
        w.WriteStartObject("added_tokens_decoder");
        foreach (int id in new[] { vocabulary.UnknownId, vocabulary.BosId, vocabulary.EosId })
        {
            w.WriteStartObject(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("content", vocabulary.Pieces[id]);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }

        w.WriteEndObject();
        w.WriteString("bos_token", vocabulary.Pieces[vocabulary.BosId]);
        w.WriteString("eos_token", vocabulary.Pieces[vocabulary.EosId]);
        w.WriteString("unk_token", vocabulary.Pieces[vocabulary.UnknownId]);
        w.WriteNull("pad_token");
        w.WriteBoolean("clean_up_tokenization_spaces", false);
        w.WriteBoolean("legacy", true);
        w.WriteNumber("model_max_length", 1000000000000000019884624838656.0);
        w.WriteString("tokenizer_class", "LlamaTokenizer");
        if (vocabulary.ChatTemplate is not null)
        {
            w.WriteString("chat_template", vocabulary.ChatTemplate);
        }
        w.WriteEndObject();
    }

    private static void WriteReplace(Utf8JsonWriter w, string pattern, string content)
    {
        w.WriteStartObject();
        w.WriteString("type", "Replace");
        w.WriteStartObject("pattern");
        w.WriteString("String", pattern);
        w.WriteEndObject();
        w.WriteString("content", content);
        w.WriteEndObject();
    }

    private static void WriteSpecial(Utf8JsonWriter w, string token, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject("SpecialToken");
        w.WriteString("id", token);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSequence(Utf8JsonWriter w, string id, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject("Sequence");
        w.WriteString("id", id);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }
}

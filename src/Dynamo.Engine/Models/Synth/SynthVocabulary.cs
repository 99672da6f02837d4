using System.Text;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// A SentencePiece-style vocabulary for a synthetic model, in GGUF form: pieces with "▁" for spaces, scores, and
/// token types (1 normal, 2 unknown, 3 control, 6 byte); unk 0, bos 1, eos 2. Either read from a llama2.c
/// tokenizer.bin (the Llama 2 tokenizer) or synthetic: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256 byte pieces
/// &lt;0x00&gt;..&lt;0xFF&gt;, then "[i]" for every other id i.
/// </summary>
public sealed class SynthVocabulary
{
    public const int TypeNormal = 1;
    public const int TypeUnknown = 2;
    public const int TypeControl = 3;
    public const int TypeByte = 6;

    /// <summary>The smallest vocabulary the synthetic tokenizer fits in (3 specials and 256 bytes).</summary>
    public const int MinSyntheticSize = 3 + 256;

    private const char SpaceMarker = '\u2581';

    private SynthVocabulary(string[] pieces, float[] scores, int[] types)
    {
        Pieces = pieces;
        Scores = scores;
        TokenTypes = types;
    }

    public IReadOnlyList<string> Pieces { get; }
    public IReadOnlyList<float> Scores { get; }
    public IReadOnlyList<int> TokenTypes { get; }

    /// <summary>A Jinja2 chat template written with the tokenizer (GGUF tokenizer.chat_template, tokenizer_config.json chat_template), or null.</summary>
    public string? ChatTemplate { get; set; }
    public int Count => Pieces.Count;
    public int UnknownId => 0;
    public int BosId => 1;
    public int EosId => 2;

    public static SynthVocabulary Synthetic(int size)
    {
        if (size < MinSyntheticSize)
        {
            throw new ArgumentException($"--vocab {size} is too small for the synthetic tokenizer (at least {MinSyntheticSize}: <unk>, <s>, </s> and 256 byte pieces)");
        }

        var pieces = new string[size];
        var types = new int[size];
        for (int i = 0; i < size; i++)
        {
            pieces[i] = i switch
            {
                0 => "<unk>",
                1 => "<s>",
                2 => "</s>",
                < MinSyntheticSize => $"<0x{i - 3:X2}>",
                _ => $"[{i}]",
            };
            types[i] = Classify(i, pieces[i]);
        }

        return new SynthVocabulary(pieces, new float[size], types);
    }

    /// <summary>
    /// Reads a llama2.c tokenizer.bin (i32 max_token_length; per token: f32 score, i32 length, UTF-8 bytes).
    /// llama2.c's export wrote spaces as spaces and BOS/EOS as "\n&lt;s&gt;\n" / "\n&lt;/s&gt;\n"; both are mapped back
    /// to SentencePiece form.
    /// </summary>
    public static SynthVocabulary FromLlama2c(string path, int expectedSize)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new ModelFormatException(path, "tokenizer file not found");
        }

        var pieces = new List<string>();
        var scores = new List<float>();
        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        int offset = 4;
        while (offset < data.Length)
        {
            int i = pieces.Count;
            if (offset + 8 > data.Length)
            {
                throw new ModelFormatException(path, $"piece {i} is truncated");
            }

            scores.Add(BitConverter.ToSingle(data, offset));
            int length = BitConverter.ToInt32(data, offset + 4);
            offset += 8;
            if (length < 0 || offset + length > data.Length)
            {
                throw new ModelFormatException(path, $"piece {i} runs past the end of the file");
            }

            string text;
            try
            {
                text = utf8.GetString(data, offset, length);
            }
            catch (DecoderFallbackException)
            {
                throw new ModelFormatException(path, $"piece {i} is not valid UTF-8");
            }

            offset += length;
            pieces.Add(text switch
            {
                "\n<s>\n" => "<s>",
                "\n</s>\n" => "</s>",
                _ => text.Replace(' ', SpaceMarker),
            });
        }

        if (pieces.Count != expectedSize)
        {
            throw new ModelFormatException(path, $"the tokenizer has {pieces.Count} pieces, the model's vocabulary (--vocab) is {expectedSize}");
        }

        var types = pieces.Select((p, i) => Classify(i, p)).ToArray();
        return new SynthVocabulary(pieces.ToArray(), scores.ToArray(), types);
    }

    /// <summary>Writes the vocabulary as a llama2.c tokenizer.bin ("▁" back to spaces).</summary>
    public void WriteLlama2c(Stream output)
    {
        var encoded = Pieces.Select(p => Encoding.UTF8.GetBytes(p.Replace(SpaceMarker, ' '))).ToArray();
        using var w = new BinaryWriter(output, Encoding.UTF8, leaveOpen: true);
        w.Write(encoded.Max(e => e.Length));
        for (int i = 0; i < encoded.Length; i++)
        {
            w.Write(Scores[i]);
            w.Write(encoded[i].Length);
            w.Write(encoded[i]);
        }
    }

    /// <summary>Adds the tokenizer.ggml.* keys of a "llama" (SentencePiece) tokenizer.</summary>
    public void AddGgufMetadata(GgufWriter gguf)
    {
        gguf.Add("tokenizer.ggml.model", "llama");
        gguf.Add("tokenizer.ggml.tokens", Pieces);
        gguf.Add("tokenizer.ggml.scores", Scores);
        gguf.Add("tokenizer.ggml.token_type", TokenTypes);
        gguf.Add("tokenizer.ggml.bos_token_id", (uint)BosId);
        gguf.Add("tokenizer.ggml.eos_token_id", (uint)EosId);
        gguf.Add("tokenizer.ggml.unknown_token_id", (uint)UnknownId);
        gguf.Add("tokenizer.ggml.add_bos_token", true);
        gguf.Add("tokenizer.ggml.add_eos_token", false);
        if (ChatTemplate is not null)
        {
            gguf.Add("tokenizer.chat_template", ChatTemplate);
        }
    }

    private static int Classify(int id, string piece) => id switch
    {
        0 => TypeUnknown,
        1 or 2 => TypeControl,
        _ when piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' => TypeByte,
        _ => TypeNormal,
    };
}

using System.Runtime.InteropServices;
using System.Text.Json;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Models.Synth;

public sealed class HfModelWriterTests
{
    [Fact]
    public void PermuteForHalfSplitRope_OneHeadOfFour_EvenRowsThenOddRows()
    {
        float[] source = [0, 0, 1, 1, 2, 2, 3, 3, 10, 10, 11, 11, 12, 12, 13, 13]; // 2 heads, headDim 4, 2 cols
        float[] destination = new float[16];

        HfModelWriter.PermuteForHalfSplitRope(source, destination, heads: 2, cols: 2);

        Assert.Equal([0, 0, 2, 2, 1, 1, 3, 3, 10, 10, 12, 12, 11, 11, 13, 13], destination);
    }

    [Fact]
    public void Write_TinyUntied_ConfigSafetensorsAndPermutedQk()
    {
        SynthModelLayout layout = SynthModelLayout.Create(SynthModelOptions.Tiny with { Tied = false });
        string dir = SynthTestFiles.TempPath("hf");

        long bytes = HfModelWriter.Write(layout, SynthVocabulary.Synthetic(512), GgmlType.F32, dir);

        byte[] file = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"));
        Assert.Equal(file.Length, bytes);
        var (dataStart, header) = SynthTestFiles.ReadSafetensors(file);
        Assert.Equal(0, dataStart % 8);
        Assert.Equal("pt", header.GetProperty("__metadata__").GetProperty("format").GetString());
        JsonElement k = header.GetProperty("model.layers.1.self_attn.k_proj.weight");
        Assert.Equal("F32", k.GetProperty("dtype").GetString());
        Assert.Equal([32, 64], k.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.True(header.TryGetProperty("lm_head.weight", out _));
        Assert.Equal(2 + (2 * 9) + 1 + 1, header.EnumerateObject().Count()); // + __metadata__

        float[] wk = new float[32 * 64];
        layout.Fill(layout.Tensors.Single(t => t.Kind == SynthTensorKind.Wk && t.Layer == 1), 0, wk);
        long start = k.GetProperty("data_offsets")[0].GetInt64();
        ReadOnlySpan<float> stored = MemoryMarshal.Cast<byte, float>(file.AsSpan((int)(dataStart + start), wk.Length * 4));
        // KV head 1, half 1, i = 2 takes interleaved row 16 + 2*2 + 1 = 21.
        Assert.Equal(wk.AsSpan(21 * 64, 64).ToArray(), stored.Slice((16 + 8 + 2) * 64, 64).ToArray());
        Assert.Equal(wk.AsSpan(0, 64).ToArray(), stored[..64].ToArray());

        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "config.json")));
        Assert.Equal("LlamaForCausalLM", config.RootElement.GetProperty("architectures")[0].GetString());
        Assert.False(config.RootElement.GetProperty("tie_word_embeddings").GetBoolean());
        Assert.Equal(2, config.RootElement.GetProperty("num_key_value_heads").GetInt32());
        Assert.Equal("float32", config.RootElement.GetProperty("torch_dtype").GetString());
        using var tokenizer = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(dir, "tokenizer.json")));
        JsonElement model = tokenizer.RootElement.GetProperty("model");
        Assert.Equal("BPE", model.GetProperty("type").GetString());
        Assert.True(model.GetProperty("byte_fallback").GetBoolean());
        Assert.Equal(259, model.GetProperty("vocab").GetProperty("[259]").GetInt32());
        Assert.True(File.Exists(Path.Combine(dir, "tokenizer_config.json")));
        Assert.True(File.Exists(Path.Combine(dir, "generation_config.json")));
    }

    [Fact]
    public void Write_BF16_HalvesTheDataAndDeclaresTheDtype()
    {
        SynthModelLayout layout = SynthModelLayout.Create(SynthModelOptions.Tiny);
        string dir = SynthTestFiles.TempPath("hf16");

        HfModelWriter.Write(layout, SynthVocabulary.Synthetic(512), GgmlType.BF16, dir);

        byte[] file = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"));
        var (dataStart, header) = SynthTestFiles.ReadSafetensors(file);
        Assert.Equal(layout.ParameterCount * 2, file.Length - dataStart);
        Assert.Equal("BF16", header.GetProperty("model.norm.weight").GetProperty("dtype").GetString());
        Assert.Throws<ArgumentException>(() => HfModelWriter.Write(layout, SynthVocabulary.Synthetic(512), GgmlType.Q8_0, dir));
    }

    [Fact]
    public void DeriveMerges_SmallVocab_AllSplitsOrderedByMergedScore()
    {
        SynthVocabulary v = VocabularyFromPieces(("a", 0f), ("b", 0f), ("c", 0f), ("ab", -1f), ("bc", -2f), ("abc", -0.5f));

        var merges = HfTokenizerJson.DeriveMerges(v);

        // "abc" (score -0.5) first: its splits a+bc and ab+c ordered by left id; then "ab" (-1), then "bc" (-2).
        Assert.Equal([("a", "bc"), ("ab", "c"), ("a", "b"), ("b", "c")], merges);
    }

    [SharedFact]
    public void DeriveMerges_Llama2Tokenizer_FirstMergesMatchHuggingFace()
    {
        SynthVocabulary v = SynthVocabulary.FromLlama2c(SharedData.Path("models", "llama2-tokenizer", "tokenizer.bin"), 32000);

        var merges = HfTokenizerJson.DeriveMerges(v);

        // The first merges of Llama 2's tokenizer.json (as in Mistral's, which shares the start of the list).
        Assert.Equal(("\u2581", "t"), merges[0]);
        Assert.Equal(("e", "r"), merges[1]);
        Assert.Equal(("i", "n"), merges[2]);
    }

    private static SynthVocabulary VocabularyFromPieces(params (string Piece, float Score)[] pieces)
    {
        string path = SynthTestFiles.TempPath("tok.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var w = new BinaryWriter(File.Create(path)))
        {
            w.Write(8);
            foreach (var (piece, score) in pieces)
            {
                w.Write(score);
                w.Write(piece.Length);
                w.Write(System.Text.Encoding.UTF8.GetBytes(piece));
            }
        }

        return SynthVocabulary.FromLlama2c(path, pieces.Length);
    }
}

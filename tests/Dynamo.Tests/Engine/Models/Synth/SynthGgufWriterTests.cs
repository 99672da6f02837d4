using System.Runtime.InteropServices;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Models.Synth;

public sealed class SynthGgufWriterTests
{
    [Fact]
    public void Write_TinyF32_LlamaMetadataAndTensorsInGgmlOrder()
    {
        SynthModelLayout layout = SynthModelLayout.Create(SynthModelOptions.Tiny);
        byte[] file = WriteGguf(layout, GgmlType.F32);

        SynthTestFiles.Gguf g = SynthTestFiles.ReadGguf(file);

        Assert.Equal(3u, g.Version);
        Assert.Equal("llama", g.Metadata["general.architecture"]);
        Assert.Equal(64u, g.Metadata["llama.embedding_length"]);
        Assert.Equal(128u, g.Metadata["llama.feed_forward_length"]);
        Assert.Equal(2u, g.Metadata["llama.block_count"]);
        Assert.Equal(4u, g.Metadata["llama.attention.head_count"]);
        Assert.Equal(2u, g.Metadata["llama.attention.head_count_kv"]);
        Assert.Equal(16u, g.Metadata["llama.rope.dimension_count"]);
        Assert.Equal(256u, g.Metadata["llama.context_length"]);
        Assert.Equal(1e-5f, g.Metadata["llama.attention.layer_norm_rms_epsilon"]);
        Assert.Equal(10000f, g.Metadata["llama.rope.freq_base"]);
        Assert.Equal(0u, g.Metadata["general.file_type"]);
        Assert.Equal("llama", g.Metadata["tokenizer.ggml.model"]);
        Assert.Equal(512, ((List<object>)g.Metadata["tokenizer.ggml.tokens"]).Count);
        Assert.Equal(true, g.Metadata["tokenizer.ggml.add_bos_token"]);
        Assert.Equal(1u, g.Metadata["tokenizer.ggml.bos_token_id"]);
        Assert.Equal(1 + 1 + (2 * 9), g.Tensors.Count); // token_embd, output_norm, 9 per layer
        Assert.DoesNotContain(g.Tensors, t => t.Name == "output.weight");

        var k = g.Tensors.Single(t => t.Name == "blk.1.attn_k.weight");
        Assert.Equal([64u, 32u], k.Dims);
        Assert.Equal([128u, 64u], g.Tensors.Single(t => t.Name == "blk.0.ffn_down.weight").Dims);
        Assert.Equal([64u], g.Tensors.Single(t => t.Name == "output_norm.weight").Dims);
        Assert.All(g.Tensors, t => Assert.Equal(0UL, t.Offset % 32));

        float[] expected = new float[64 * 32];
        layout.Fill(layout.Tensors.Single(t => t.Kind == SynthTensorKind.Wk && t.Layer == 1), 0, expected);
        Assert.Equal(expected, MemoryMarshal.Cast<byte, float>(file.AsSpan((int)(g.DataStart + (long)k.Offset), expected.Length * 4)).ToArray());
        var norm = g.Tensors.Single(t => t.Name == "blk.0.ffn_norm.weight");
        Assert.All(MemoryMarshal.Cast<byte, float>(file.AsSpan((int)(g.DataStart + (long)norm.Offset), 256)).ToArray(), v => Assert.Equal(1f, v));
    }

    [Theory]
    [InlineData(GgmlType.F16, 1u)]
    [InlineData(GgmlType.Q8_0, 7u)]
    [InlineData(GgmlType.Q4_0, 2u)]
    public void Write_UntiedQuantized_EveryMatrixHasTheTypeNormsStayF32(GgmlType type, uint fileType)
    {
        SynthModelLayout layout = SynthModelLayout.Create(SynthModelOptions.Tiny with { Tied = false });
        byte[] file = WriteGguf(layout, type);

        SynthTestFiles.Gguf g = SynthTestFiles.ReadGguf(file);

        Assert.Equal(fileType, g.Metadata["general.file_type"]);
        Assert.Contains(g.Tensors, t => t.Name == "output.weight");
        foreach (var t in g.Tensors)
        {
            Assert.Equal(t.Dims.Length == 2 ? (uint)type : 0u, t.Type);
        }

        var embd = g.Tensors.Single(t => t.Name == "token_embd.weight");
        float[] rows = new float[64 * 2];
        layout.Fill(layout.Tensors[0], 0, rows);
        byte[] quantized = new byte[GgmlTypeInfo.ByteSize(type, rows.Length)];
        GgmlQuantizer.Quantize(type, rows, quantized);
        Assert.Equal(quantized, file.AsSpan((int)(g.DataStart + (long)embd.Offset), quantized.Length).ToArray());
    }

    [Fact]
    public void Write_Q8_0WithHiddenNotMultipleOf32_ThrowsNamingFlags()
    {
        SynthModelLayout layout = SynthModelLayout.Create(SynthModelOptions.Tiny with { HiddenDim = 48 });
        var ex = Assert.Throws<ArgumentException>(() => SynthGgufWriter.Write(layout, SynthVocabulary.Synthetic(512), GgmlType.Q8_0, Stream.Null));
        Assert.Contains("--hidden-dim", ex.Message, StringComparison.Ordinal);
    }

    private static byte[] WriteGguf(SynthModelLayout layout, GgmlType type)
    {
        using var stream = new MemoryStream();
        long bytes = SynthGgufWriter.Write(layout, SynthVocabulary.Synthetic(layout.Options.VocabSize), type, stream);
        Assert.Equal(stream.Length, bytes);
        return stream.ToArray();
    }
}

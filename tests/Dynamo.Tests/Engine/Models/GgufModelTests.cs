using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Models;

public class GgufModelTests
{
    [SharedFact]
    public void Open_Stories260K_BuildsLlamaConfig()
    {
        using GgufModel m = GgufModel.Open(SharedData.Path("oracle", "stories260K.gguf"));
        ModelConfig c = m.Config;

        Assert.Equal("llama", c.Architecture);
        Assert.Equal(64, c.Dim);
        Assert.Equal(5, c.Layers);
        Assert.Equal(8, c.Heads);
        Assert.Equal(4, c.KvHeads);
        Assert.Equal(8, c.HeadDim);
        Assert.Equal(512, c.VocabSize);
        Assert.Equal(RopeLayout.Interleaved, c.RopeLayout);
        Assert.Equal(!m.Tensors.ContainsKey("output.weight"), c.TiedEmbeddings);
        Assert.False(c.QkvBias);
        Assert.False(c.QkNorm);
        Assert.Null(c.RopeScaling);
        Assert.Equal(512, m.File.GetArray<string>("tokenizer.ggml.tokens").Length);
    }

    [SharedFact]
    public void Open_Stories260K_EmbeddingRowMatchesTheLlama2cFile()
    {
        using GgufModel m = GgufModel.Open(SharedData.Path("oracle", "stories260K.gguf"));
        byte[] bin = File.ReadAllBytes(SharedData.Path("models", "stories260K", "stories260K.bin"));
        var row = new float[64];

        MatMul.DequantizeRow(m.Tensors["token_embd.weight"], 3, row);

        // llama2.c: a 7-int header, then the token embedding table [vocab, dim].
        var expected = new float[64];
        Buffer.BlockCopy(bin, 28 + 3 * 64 * 4, expected, 0, 64 * 4);
        Assert.Equal(expected, row);
    }

    [Fact]
    public void Open_Qwen3WithQkNorm_UsesHalfSplitAndFlags()
    {
        using var dir = new TempDir();
        string path = GgufTestWriter.TinyModel("qwen3", tied: false, qkNorm: true).UInt("qwen3.attention.key_length", 16).WriteTo(dir.Path);

        using GgufModel m = GgufModel.Open(path);

        Assert.Equal(RopeLayout.HalfSplit, m.Config.RopeLayout);
        Assert.True(m.Config.QkNorm);
        Assert.False(m.Config.TiedEmbeddings);
        Assert.Equal(16, m.Config.HeadDim);
        Assert.Equal(1e6f, m.Config.RopeTheta);
        Assert.Equal(1e-6f, m.Config.RmsNormEps);
        Assert.Equal(8, m.Config.VocabSize);
    }

    [Fact]
    public void Open_Qwen2WithBias_SetsQkvBias()
    {
        using var dir = new TempDir();
        using GgufModel m = GgufModel.Open(GgufTestWriter.TinyModel("qwen2", qkvBias: true).WriteTo(dir.Path));

        Assert.True(m.Config.QkvBias);
        Assert.True(m.Config.TiedEmbeddings);
        Assert.Equal(RopeLayout.HalfSplit, m.Config.RopeLayout);
    }

    [Fact]
    public void Open_ThroughASymbolicLink_ReadsTheFileItNames()
    {
        // A Hugging Face cache entry is a link to a blob: the mapping's length is the target's, not the link's.
        using var dir = new TempDir();
        string target = GgufTestWriter.TinyModel("llama").WriteTo(dir.Path);
        string link = System.IO.Path.Combine(dir.Path, "linked.gguf");
        File.CreateSymbolicLink(link, target);

        using GgufModel direct = GgufModel.Open(target);
        using GgufModel linked = GgufModel.Open(link);

        Assert.Equal(new FileInfo(target).Length, linked.File.FileLength);
        Assert.Equal(direct.Config.Dim, linked.Config.Dim);
        Assert.Equal(direct.Tensors.Keys.Order(), linked.Tensors.Keys.Order());
    }

    [Fact]
    public void Open_RopeFreqsTensor_RecordsLlama3Scaling()
    {
        using var dir = new TempDir();
        string path = GgufTestWriter.TinyModel("llama").F32("rope_freqs.weight", 1f, 8).Float("llama.rope.scaling.factor", 32f).WriteTo(dir.Path);

        using GgufModel m = GgufModel.Open(path);

        Assert.NotNull(m.RopeFreqs);
        Assert.Equal(new RopeScaling(32f, 1f, 4f, 8192), m.Config.RopeScaling);
    }

    [Fact]
    public void Open_UnsupportedArchitecture_ThrowsNamingIt()
    {
        using var dir = new TempDir();
        string path = GgufTestWriter.TinyModel("gpt2").WriteTo(dir.Path);

        Assert.Contains("unsupported architecture 'gpt2'", Assert.Throws<ModelFormatException>(() => GgufModel.Open(path)).Problem);
    }

    [Fact]
    public void Open_UnsupportedTensorType_ThrowsNamingTensorAndType()
    {
        using var dir = new TempDir();
        string path = GgufTestWriter.TinyModel("llama").Tensor("extra.weight", GgmlType.Q5_K, [256], new byte[176]).WriteTo(dir.Path);

        string problem = Assert.Throws<ModelFormatException>(() => GgufModel.Open(path)).Problem;
        Assert.Contains("'extra.weight'", problem);
        Assert.Contains("Q5_K", problem);
    }

    [Fact]
    public void Open_WrongShape_ThrowsNamingTensor()
    {
        using var dir = new TempDir();
        string path = GgufTestWriter.TinyModel("llama").F32("output.weight", 0f, 32, 9).WriteTo(dir.Path);

        string problem = Assert.Throws<ModelFormatException>(() => GgufModel.Open(path)).Problem;
        Assert.Contains("'output.weight' has shape [32, 9], expected [32, 8]", problem);
    }

    [Fact]
    public void Open_MissingHyperParameter_ThrowsNamingKey()
    {
        using var dir = new TempDir();
        var g = new GgufTestWriter().String("general.architecture", "llama").F32("token_embd.weight", 0f, 32, 8);

        Assert.Contains("'llama.attention.head_count' (an unsigned integer) is missing", Assert.Throws<ModelFormatException>(() => GgufModel.Open(g.WriteTo(dir.Path))).Problem);
    }
}

using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Models;

public class SafeTensorsModelTests
{
    [SharedFact]
    public void Open_TinyStories656K_UsesLmHeadAsTiedEmbedding()
    {
        using SafeTensorsModel m = SafeTensorsModel.Open(SharedData.Path("models", "tinystories-656k"));
        ModelConfig c = m.Config;

        Assert.Equal("llama", c.Architecture);
        Assert.Equal(128, c.Dim);
        Assert.Equal(384, c.HiddenDim);
        Assert.Equal(2, c.Layers);
        Assert.Equal(8, c.Heads);
        Assert.Equal(4, c.KvHeads);
        Assert.Equal(16, c.HeadDim);
        Assert.Equal(2048, c.VocabSize);
        Assert.Equal(512, c.ContextLength);
        Assert.Equal(1e-6f, c.RmsNormEps);
        Assert.Equal(RopeLayout.HalfSplit, c.RopeLayout);
        Assert.True(c.TiedEmbeddings);
        Assert.False(m.Tensors.ContainsKey("output.weight"));
        Assert.Equal([128L, 2048L], m.Tensors["token_embd.weight"].Dims);
        Assert.Equal([128L, 64L], m.Tensors["blk.1.attn_k.weight"].Dims);
        Assert.Equal([384L, 128L], m.Tensors["blk.0.ffn_down.weight"].Dims);
        Assert.Equal(9 * 2 + 2, m.Tensors.Count);
    }

    [SharedFact]
    public void Open_TinyStories656K_EmbeddingRowIsLmHeadRow()
    {
        string dir = SharedData.Path("models", "tinystories-656k");
        using SafeTensorsModel m = SafeTensorsModel.Open(dir);
        byte[] file = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"));
        long headerLength = BitConverter.ToInt64(file, 0);
        var expected = new float[128];
        Buffer.BlockCopy(file, (int)(8 + headerLength + 5 * 128 * 4), expected, 0, 128 * 4);
        var row = new float[128];

        MatMul.DequantizeRow(m.Tensors["token_embd.weight"], 5, row);

        Assert.Equal(expected, row);
    }

    [Fact]
    public void Open_Qwen3Sharded_MapsNamesAcrossShards()
    {
        using var dir = new TempDir();
        var all = SafeTensorsTestWriter.TinyLlama(lmHead: true, qkNorm: true);
        SafeTensorsTestWriter.Write(dir.File("model-00001-of-00002.safetensors"), all.Take(10));
        SafeTensorsTestWriter.Write(dir.File("model-00002-of-00002.safetensors"), all.Skip(10));
        string map = string.Join(",", all.Select((t, i) => $"\"{t.Name}\": \"model-0000{(i < 10 ? 1 : 2)}-of-00002.safetensors\""));
        File.WriteAllText(dir.File("model.safetensors.index.json"), $"{{\"metadata\": {{}}, \"weight_map\": {{{map}}}}}");
        SafeTensorsTestWriter.WriteConfig(dir.Path, "Qwen3ForCausalLM", tied: false, ", \"head_dim\": 16");

        using SafeTensorsModel m = SafeTensorsModel.Open(dir.Path);

        Assert.Equal("qwen3", m.Config.Architecture);
        Assert.True(m.Config.QkNorm);
        Assert.False(m.Config.TiedEmbeddings);
        Assert.Equal(500000f, m.Config.RopeTheta);
        Assert.Equal([32L, 8L], m.Tensors["output.weight"].Dims);
        Assert.Equal([16L], m.Tensors["blk.1.attn_q_norm.weight"].Dims);
        Assert.Equal([64L, 32L], m.Tensors["blk.1.ffn_down.weight"].Dims);
    }

    [Fact]
    public void Open_Qwen2WithBiasAndLlama3Scaling_ReadsConfig()
    {
        using var dir = new TempDir();
        SafeTensorsTestWriter.Write(dir.File("model.safetensors"), SafeTensorsTestWriter.TinyLlama(lmHead: false, bias: true));
        SafeTensorsTestWriter.WriteConfig(dir.Path, "Qwen2ForCausalLM", tied: true,
            ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}");

        using SafeTensorsModel m = SafeTensorsModel.Open(dir.Path);

        Assert.True(m.Config.QkvBias);
        Assert.True(m.Config.TiedEmbeddings);
        Assert.Equal(new RopeScaling(8f, 1f, 4f, 8192), m.Config.RopeScaling);
        Assert.Equal([32L], m.Tensors["blk.0.attn_q.bias"].Dims);
    }

    [Fact]
    public void Open_UnsupportedArchitecture_ThrowsNamingIt()
    {
        using var dir = new TempDir();
        SafeTensorsTestWriter.Write(dir.File("model.safetensors"), SafeTensorsTestWriter.TinyLlama(lmHead: false));
        SafeTensorsTestWriter.WriteConfig(dir.Path, "GPT2LMHeadModel", tied: true);

        Assert.Contains("unsupported architecture 'GPT2LMHeadModel'", Assert.Throws<ModelFormatException>(() => SafeTensorsModel.Open(dir.Path)).Problem);
    }

    [Fact]
    public void Open_UnsupportedDtype_ThrowsNamingTensor()
    {
        using var dir = new TempDir();
        SafeTensorsTestWriter.Write(dir.File("model.safetensors"), SafeTensorsTestWriter.TinyLlama(lmHead: false), dtype: "I64");
        SafeTensorsTestWriter.WriteConfig(dir.Path, "LlamaForCausalLM", tied: true);

        string problem = Assert.Throws<ModelFormatException>(() => SafeTensorsModel.Open(dir.Path)).Problem;
        Assert.Contains("has dtype I64", problem);
    }

    [Fact]
    public void Open_OffsetsBeyondFile_Throws()
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        SafeTensorsTestWriter.Write(path, SafeTensorsTestWriter.TinyLlama(lmHead: false));
        byte[] b = File.ReadAllBytes(path);
        File.WriteAllBytes(path, b.AsSpan(0, b.Length - 8).ToArray());
        SafeTensorsTestWriter.WriteConfig(dir.Path, "LlamaForCausalLM", tied: true);

        Assert.Contains("lie outside", Assert.Throws<ModelFormatException>(() => SafeTensorsModel.Open(dir.Path)).Problem);
    }

    [Fact]
    public void Open_CorruptHeader_Throws()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("model.safetensors"), [.. BitConverter.GetBytes(1000UL), .. "{not json"u8]);
        SafeTensorsTestWriter.WriteConfig(dir.Path, "LlamaForCausalLM", tied: true);

        Assert.Contains("header length 1000 is impossible", Assert.Throws<ModelFormatException>(() => SafeTensorsModel.Open(dir.Path)).Problem);
    }

    [Fact]
    public void Open_MissingTensor_ThrowsNamingIt()
    {
        using var dir = new TempDir();
        SafeTensorsTestWriter.Write(dir.File("model.safetensors"), SafeTensorsTestWriter.TinyLlama(lmHead: false).Where(t => t.Name != "model.layers.1.mlp.up_proj.weight"));
        SafeTensorsTestWriter.WriteConfig(dir.Path, "LlamaForCausalLM", tied: true);

        Assert.Contains("'blk.1.ffn_up.weight' is missing", Assert.Throws<ModelFormatException>(() => SafeTensorsModel.Open(dir.Path)).Problem);
    }
}

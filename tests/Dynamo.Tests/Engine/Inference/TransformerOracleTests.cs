using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>
/// The forward pass against what run.c, llama.cpp and a float64 Hugging Face reimplementation computed on the same files,
/// with an F32 KV cache (as run.c and the references) and with an F16 one (llama.cpp's default: its F16-KV greedy tokens
/// are the same as its F32-KV ones on these prompts; the logits move by the rounding of keys and values).
/// </summary>
public class TransformerOracleTests
{
    private static int[] Greedy(Transformer model, int[] prompt, int steps, KvCacheDtype dtype, List<float>? allLogits = null)
    {
        int vocab = model.Config.VocabSize;
        var cache = new SequenceKvCache(model.Config, prompt.Length + steps, dtype);
        var logits = new float[prompt.Length * vocab];
        model.Forward(prompt, 0, cache, logits, allLogits: true);
        allLogits?.AddRange(logits);
        var output = new int[steps];
        var last = logits.AsSpan((prompt.Length - 1) * vocab, vocab).ToArray();
        for (int s = 0; s < steps; s++)
        {
            int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(last);
            output[s] = next;
            if (s + 1 < steps)
            {
                model.Forward([next], prompt.Length + s, cache, last);
                allLogits?.AddRange(last);
            }
        }

        return output;
    }

    [SharedTheory]
    [InlineData("models/stories260K/stories260K.bin", "P0_bos", "runc_P0_bos_logits.f32", KvCacheDtype.F32)]
    [InlineData("models/stories260K/stories260K.bin", "P1_once", "runc_P1_once_logits.f32", KvCacheDtype.F32)]
    [InlineData("oracle/stories260K.gguf", "P0_bos", "llamacpp_P0_bos_logits.f32", KvCacheDtype.F32)]
    [InlineData("oracle/stories260K.gguf", "P1_once", "llamacpp_P1_once_logits.f32", KvCacheDtype.F32)]
    [InlineData("oracle/stories260K.gguf", "P0_bos", "llamacpp_P0_bos_logits.f32", KvCacheDtype.F16)]
    [InlineData("oracle/stories260K.gguf", "P1_once", "llamacpp_P1_once_logits.f32", KvCacheDtype.F16)]
    [InlineData("models/stories260K/stories260K.bin", "P1_once", "runc_P1_once_logits.f32", KvCacheDtype.F16)]
    public void Greedy_Stories260K_MatchesRunCTokensAndLogits(string modelPath, string section, string logitsFile, KvCacheDtype dtype)
    {
        Dictionary<string, string> s = OracleFiles.Section("stories260K_greedy.txt", section);
        int[] prompt = OracleFiles.Ids(s["prompt"]);
        // llama.cpp's F16-KV greedy tokens (its default cache) are run.c's on these prompts: both are checked.
        int[] expected = OracleFiles.Ids(s[dtype == KvCacheDtype.F16 ? "llamacpp_f16kv" : "runc"]);
        using var model = new Transformer(ModelLoader.Load(SharedData.Path(modelPath.Split('/'))));
        var logits = new List<float>();
        int[] actual = Greedy(model, prompt, expected.Length, dtype, logits);
        Assert.Equal(expected, actual);
        Assert.Equal(OracleFiles.Ids(s["runc"]), actual);
        float[] reference = OracleFiles.Floats(logitsFile);
        Assert.Equal(reference.Length, logits.Count);
        double err = OracleFiles.MaxRelativeError(logits.ToArray(), reference, 512);
        double bound = dtype == KvCacheDtype.F16 ? F16KvBound : 1e-4;
        Assert.True(err < bound, $"max relative logit error {err:E2} ({dtype} KV, bound {bound:E0})");
    }

    /// <summary>
    /// Logits with an F16 KV cache against references computed with float32 keys and values: the rounding of every
    /// key and value to half (relative 2^-11) moves a logit by at most this share of its row's largest.
    /// </summary>
    private const double F16KvBound = 3e-3;

    [SharedTheory]
    [InlineData("P1", KvCacheDtype.F32)]
    [InlineData("P2", KvCacheDtype.F32)]
    [InlineData("P3", KvCacheDtype.F32)]
    [InlineData("P1", KvCacheDtype.F16)]
    [InlineData("P2", KvCacheDtype.F16)]
    [InlineData("P3", KvCacheDtype.F16)]
    public void Greedy_TinyStoriesHf_MatchesFloat64Reference(string section, KvCacheDtype dtype)
    {
        Dictionary<string, string> s = OracleFiles.Section("tinystories656k_greedy.txt", section);
        int[] prompt = OracleFiles.Ids(s["prompt_ids"]);
        int[] expected = OracleFiles.Ids(s["continuation_ids"]);
        using var model = new Transformer(ModelLoader.Load(SharedData.Path("models", "tinystories-656k")));
        var logits = new List<float>();
        int[] actual = Greedy(model, prompt, expected.Length, dtype, logits);
        Assert.Equal(expected, actual);
        float[] reference = OracleFiles.Floats($"tinystories656k_logits_{section}.f32");
        double err = OracleFiles.MaxRelativeError(logits.Take(reference.Length).ToArray(), reference, 2048);
        double bound = dtype == KvCacheDtype.F16 ? F16KvBound : 1e-4;
        Assert.True(err < bound, $"max relative logit error {err:E2} ({dtype} KV, bound {bound:E0})");
    }
}

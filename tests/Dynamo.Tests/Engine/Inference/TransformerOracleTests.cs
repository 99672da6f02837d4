using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>The forward pass against what run.c, llama.cpp and a float64 Hugging Face reimplementation computed on the same files.</summary>
public class TransformerOracleTests
{
    private static int[] Greedy(Transformer model, int[] prompt, int steps, List<float>? allLogits = null)
    {
        int vocab = model.Config.VocabSize;
        var cache = new SequenceKvCache(model.Config, prompt.Length + steps);
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
    [InlineData("models/stories260K/stories260K.bin", "P0_bos", "runc_P0_bos_logits.f32")]
    [InlineData("models/stories260K/stories260K.bin", "P1_once", "runc_P1_once_logits.f32")]
    [InlineData("oracle/stories260K.gguf", "P0_bos", "llamacpp_P0_bos_logits.f32")]
    [InlineData("oracle/stories260K.gguf", "P1_once", "llamacpp_P1_once_logits.f32")]
    public void Greedy_Stories260K_MatchesRunCTokensAndLogits(string modelPath, string section, string logitsFile)
    {
        Dictionary<string, string> s = OracleFiles.Section("stories260K_greedy.txt", section);
        int[] prompt = OracleFiles.Ids(s["prompt"]);
        int[] expected = OracleFiles.Ids(s["runc"]);
        using var model = new Transformer(ModelLoader.Load(SharedData.Path(modelPath.Split('/'))));
        var logits = new List<float>();
        int[] actual = Greedy(model, prompt, expected.Length, logits);
        Assert.Equal(expected, actual);
        float[] reference = OracleFiles.Floats(logitsFile);
        Assert.Equal(reference.Length, logits.Count);
        double err = OracleFiles.MaxRelativeError(logits.ToArray(), reference, 512);
        Assert.True(err < 1e-4, $"max relative logit error {err:E2}");
    }

    [SharedTheory]
    [InlineData("P1")]
    [InlineData("P2")]
    [InlineData("P3")]
    public void Greedy_TinyStoriesHf_MatchesFloat64Reference(string section)
    {
        Dictionary<string, string> s = OracleFiles.Section("tinystories656k_greedy.txt", section);
        int[] prompt = OracleFiles.Ids(s["prompt_ids"]);
        int[] expected = OracleFiles.Ids(s["continuation_ids"]);
        using var model = new Transformer(ModelLoader.Load(SharedData.Path("models", "tinystories-656k")));
        var logits = new List<float>();
        int[] actual = Greedy(model, prompt, expected.Length, logits);
        Assert.Equal(expected, actual);
        float[] reference = OracleFiles.Floats($"tinystories656k_logits_{section}.f32");
        double err = OracleFiles.MaxRelativeError(logits.Take(reference.Length).ToArray(), reference, 2048);
        Assert.True(err < 1e-4, $"max relative logit error {err:E2}");
    }
}

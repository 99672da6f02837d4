using System.Runtime.InteropServices;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>
/// Small models for the batching and KV transfer tests, written once per test run, and a bitwise comparison.
/// "llama" (GQA 4/2 heads), "qwen2" (QKV bias, half-split rope), "qwen3" (QK-norm, head dim 32): random F32
/// weights; "Q8_0" and "Q4_0": the tiny synthesized preset with quantized matrices.
/// </summary>
internal static class BatchTestModels
{
    private static readonly string Directory = System.IO.Directory.CreateDirectory(
        System.IO.Path.Combine(System.IO.Path.GetTempPath(), "dynamo-batch-tests", Guid.NewGuid().ToString("N"))).FullName;

    private static readonly Dictionary<string, Lazy<string>> Paths = new()
    {
        ["llama"] = new(() => Random(new RandomGgufModel { Architecture = "llama", Seed = 11 })),
        ["qwen2"] = new(() => Random(new RandomGgufModel { Architecture = "qwen2", QkvBias = true, Tied = true, RopeTheta = 1e6f, Seed = 12 })),
        ["qwen3"] = new(() => Random(new RandomGgufModel { Architecture = "qwen3", QkNorm = true, HeadDim = 32, RopeTheta = 1e6f, Seed = 13 })),
        ["Q8_0"] = new(() => Synth(GgmlType.Q8_0)),
        ["Q4_0"] = new(() => Synth(GgmlType.Q4_0)),
    };

    public static string Path(string name) => Paths[name].Value;

    private static string Random(RandomGgufModel model) =>
        model.WriteTo(System.IO.Directory.CreateDirectory(System.IO.Path.Combine(Directory, model.Architecture)).FullName);

    private static string Synth(GgmlType type) =>
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with
        {
            OutputPath = System.IO.Path.Combine(Directory, $"tiny-{type}.gguf"),
            Format = SynthFormat.Gguf,
            Type = type,
        }).Path;

    /// <summary>Fails unless the two rows hold the same float bits, naming the first difference.</summary>
    public static void AssertBitIdentical(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string label)
    {
        Assert.Equal(expected.Length, actual.Length);
        ReadOnlySpan<int> e = MemoryMarshal.Cast<float, int>(expected), a = MemoryMarshal.Cast<float, int>(actual);
        if (e.SequenceEqual(a))
        {
            return;
        }

        int i = 0;
        while (e[i] == a[i])
        {
            i++;
        }

        Assert.Fail($"{label}: logit {i} is {actual[i]:R}, expected {expected[i]:R} (bits {a[i]:X8} vs {e[i]:X8})");
    }
}

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// The shape and seed of a random-weight Llama model (the benchmark models of ../shared/anchors.md).
/// <see cref="Default"/> is the ~100K-parameter "tiny" preset used by tests.
/// </summary>
public sealed record SynthModelOptions
{
    public string Name { get; init; } = "tiny";
    public int Dim { get; init; } = 64;
    public int HiddenDim { get; init; } = 128;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int VocabSize { get; init; } = 512;
    public int ContextLength { get; init; } = 256;
    /// <summary>True when the classifier is the token embedding (no output.weight, positive vocab in a llama2.c header).</summary>
    public bool Tied { get; init; } = true;
    public ulong Seed { get; init; } = 42;

    public static SynthModelOptions Default { get; } = new();

    /// <summary>"tiny": dim 64, 2 layers, 4 heads, 2 KV heads, FFN 128, vocab 512, context 256, seed 42, tied (~107K parameters).</summary>
    public static SynthModelOptions Tiny => Default;

    /// <summary>"110m": dim 768, 12 layers, 12 heads, FFN 2048, vocab 32000, context 1024, seed 110, tied.</summary>
    public static SynthModelOptions Rand110m { get; } = new()
    {
        Name = "rand110m", Dim = 768, HiddenDim = 2048, Layers = 12, Heads = 12, KvHeads = 12,
        VocabSize = 32000, ContextLength = 1024, Tied = true, Seed = 110,
    };

    /// <summary>"1b1" (TinyLlama shape): dim 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632, vocab 32000, context 2048, seed 1100, untied.</summary>
    public static SynthModelOptions Rand1b1 { get; } = new()
    {
        Name = "rand1b1", Dim = 2048, HiddenDim = 5632, Layers = 22, Heads = 32, KvHeads = 4,
        VocabSize = 32000, ContextLength = 2048, Tied = false, Seed = 1100,
    };

    /// <summary>The preset names <see cref="FromPreset"/> accepts.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["tiny", "110m", "1b1"];

    public int HeadDim => Dim / Heads;

    public int KvDim => HeadDim * KvHeads;

    /// <summary>A preset by name ("tiny", "110m", "1b1"), or null.</summary>
    public static SynthModelOptions? FromPreset(string name) => name switch
    {
        "tiny" => Tiny,
        "110m" => Rand110m,
        "1b1" => Rand1b1,
        _ => null,
    };

    /// <summary>Throws <see cref="ArgumentException"/> with a message naming the offending flag.</summary>
    public void Validate()
    {
        Positive(Dim, "--dim");
        Positive(HiddenDim, "--hidden-dim");
        Positive(Layers, "--layers");
        Positive(Heads, "--heads");
        Positive(KvHeads, "--kv-heads");
        Positive(VocabSize, "--vocab");
        Positive(ContextLength, "--context-length");
        if (Dim % Heads != 0)
        {
            throw new ArgumentException($"--dim {Dim} is not a multiple of --heads {Heads}");
        }

        if (Heads % KvHeads != 0)
        {
            throw new ArgumentException($"--heads {Heads} is not a multiple of --kv-heads {KvHeads}");
        }

        if (HeadDim % 2 != 0)
        {
            throw new ArgumentException($"head dimension {HeadDim} (--dim / --heads) must be even for RoPE");
        }
    }

    private static void Positive(int value, string flag)
    {
        if (value <= 0)
        {
            throw new ArgumentException($"{flag} must be positive (got {value})");
        }
    }
}

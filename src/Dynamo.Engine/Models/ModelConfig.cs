namespace Dynamo.Engine.Models;

/// <summary>Llama-family rope scaling ("llama3" type): see Llama 3.1's config.json rope_scaling.</summary>
public sealed record RopeScaling(float Factor, float LowFreqFactor, float HighFreqFactor, int OriginalContextLength);

/// <summary>The shape and hyper-parameters of a decoder-only transformer, whatever file it came from.</summary>
public sealed record ModelConfig
{
    /// <summary>Architecture name as the file states it, lower case: "llama", "mistral", "qwen2", "qwen3".</summary>
    public required string Architecture { get; init; }
    public required int Dim { get; init; }
    public required int HiddenDim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int VocabSize { get; init; }
    public required int ContextLength { get; init; }
    /// <summary>Per-head dimension; Dim / Heads unless the file says otherwise (Qwen3 does).</summary>
    public int HeadDim { get; init; }
    public float RmsNormEps { get; init; } = 1e-5f;
    public float RopeTheta { get; init; } = 10000f;
    public RopeLayout RopeLayout { get; init; } = RopeLayout.Interleaved;
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>True when the output projection is the token embedding (no separate output.weight).</summary>
    public bool TiedEmbeddings { get; init; }
    /// <summary>Q/K/V projections carry a bias (Qwen2).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Per-head RMSNorm on Q and K before RoPE (Qwen3).</summary>
    public bool QkNorm { get; init; }
}

namespace Dynamo.Engine.Models;

/// <summary>How rotary embeddings pair the dimensions of a head.</summary>
public enum RopeLayout
{
    /// <summary>Pairs (2i, 2i+1): llama2.c, and llama-arch GGUF files (whose Q/K rows the converter permuted).</summary>
    Interleaved = 0,

    /// <summary>Pairs (i, i + headDim/2), "rotate_half": Hugging Face checkpoints, qwen2/qwen3 GGUF files.</summary>
    HalfSplit = 1,
}

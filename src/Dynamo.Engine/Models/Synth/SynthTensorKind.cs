namespace Dynamo.Engine.Models.Synth;

/// <summary>The tensors of a llama2.c checkpoint, in the order its legacy format stores them.</summary>
public enum SynthTensorKind
{
    TokenEmbedding = 0,
    AttentionNorm = 1,
    Wq = 2,
    Wk = 3,
    Wv = 4,
    Wo = 5,
    FfnNorm = 6,
    W1 = 7,
    W2 = 8,
    W3 = 9,
    OutputNorm = 10,
    /// <summary>The legacy freq_cis block (cos then sin, seq_len × head_dim/2 each), all zeros; llama2.c files only.</summary>
    FreqCis = 11,
    /// <summary>The classifier, untied models only.</summary>
    Output = 12,
}

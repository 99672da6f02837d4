namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// One tensor of a synthetic model: row-major <paramref name="Rows"/> × <paramref name="Cols"/> (a linear layer
/// y = W x has Rows = out, Cols = in, GGUF dims [Cols, Rows]), either drawn from the generator starting at
/// normal number <paramref name="DrawIndex"/>, or (DrawIndex &lt; 0) filled with <paramref name="Constant"/>.
/// </summary>
public sealed record SynthTensor(SynthTensorKind Kind, int Layer, int Rows, int Cols, long DrawIndex, float Constant)
{
    public long ElementCount => (long)Rows * Cols;

    public bool IsDrawn => DrawIndex >= 0;

    /// <summary>True for the 2-D weight matrices (quantizable); false for norm vectors and the freq_cis block.</summary>
    public bool IsMatrix => Kind is not (SynthTensorKind.AttentionNorm or SynthTensorKind.FfnNorm or SynthTensorKind.OutputNorm or SynthTensorKind.FreqCis);

    /// <summary>The GGUF (llama.cpp) tensor name.</summary>
    public string GgufName => Kind switch
    {
        SynthTensorKind.TokenEmbedding => "token_embd.weight",
        SynthTensorKind.AttentionNorm => $"blk.{Layer}.attn_norm.weight",
        SynthTensorKind.Wq => $"blk.{Layer}.attn_q.weight",
        SynthTensorKind.Wk => $"blk.{Layer}.attn_k.weight",
        SynthTensorKind.Wv => $"blk.{Layer}.attn_v.weight",
        SynthTensorKind.Wo => $"blk.{Layer}.attn_output.weight",
        SynthTensorKind.FfnNorm => $"blk.{Layer}.ffn_norm.weight",
        SynthTensorKind.W1 => $"blk.{Layer}.ffn_gate.weight",
        SynthTensorKind.W2 => $"blk.{Layer}.ffn_down.weight",
        SynthTensorKind.W3 => $"blk.{Layer}.ffn_up.weight",
        SynthTensorKind.OutputNorm => "output_norm.weight",
        SynthTensorKind.Output => "output.weight",
        _ => throw new InvalidOperationException($"{Kind} has no GGUF name"),
    };

    /// <summary>The Hugging Face (LlamaForCausalLM) tensor name.</summary>
    public string HfName => Kind switch
    {
        SynthTensorKind.TokenEmbedding => "model.embed_tokens.weight",
        SynthTensorKind.AttentionNorm => $"model.layers.{Layer}.input_layernorm.weight",
        SynthTensorKind.Wq => $"model.layers.{Layer}.self_attn.q_proj.weight",
        SynthTensorKind.Wk => $"model.layers.{Layer}.self_attn.k_proj.weight",
        SynthTensorKind.Wv => $"model.layers.{Layer}.self_attn.v_proj.weight",
        SynthTensorKind.Wo => $"model.layers.{Layer}.self_attn.o_proj.weight",
        SynthTensorKind.FfnNorm => $"model.layers.{Layer}.post_attention_layernorm.weight",
        SynthTensorKind.W1 => $"model.layers.{Layer}.mlp.gate_proj.weight",
        SynthTensorKind.W2 => $"model.layers.{Layer}.mlp.down_proj.weight",
        SynthTensorKind.W3 => $"model.layers.{Layer}.mlp.up_proj.weight",
        SynthTensorKind.OutputNorm => "model.norm.weight",
        SynthTensorKind.Output => "lm_head.weight",
        _ => throw new InvalidOperationException($"{Kind} has no Hugging Face name"),
    };
}

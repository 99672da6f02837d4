namespace Dynamo.Engine.Models;

/// <summary>
/// A loaded checkpoint: its config and its tensors under canonical (GGUF) names:
/// <c>token_embd.weight</c>, <c>output_norm.weight</c>, <c>output.weight</c> (absent when tied),
/// and per layer N: <c>blk.N.attn_norm.weight</c>, <c>blk.N.attn_q.weight</c>, <c>blk.N.attn_k.weight</c>,
/// <c>blk.N.attn_v.weight</c>, <c>blk.N.attn_output.weight</c>, <c>blk.N.ffn_norm.weight</c>,
/// <c>blk.N.ffn_gate.weight</c> (w1), <c>blk.N.ffn_down.weight</c> (w2), <c>blk.N.ffn_up.weight</c> (w3),
/// optional <c>blk.N.attn_q.bias</c>/<c>attn_k.bias</c>/<c>attn_v.bias</c> (Qwen2) and
/// <c>blk.N.attn_q_norm.weight</c>/<c>attn_k_norm.weight</c> (Qwen3).
/// Disposing releases the mapping; tensors must not be used after that.
/// </summary>
public interface IModelWeights : IDisposable
{
    ModelConfig Config { get; }
    IReadOnlyDictionary<string, Tensor> Tensors { get; }
    /// <summary>Where the weights came from (a file or directory path), for messages.</summary>
    string Source { get; }
}

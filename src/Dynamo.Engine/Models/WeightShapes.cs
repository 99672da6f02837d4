using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models;

/// <summary>
/// Checks a config and a canonical tensor set against each other, so that a wrong file fails at load
/// with a message naming the tensor instead of reading out of bounds later.
/// </summary>
internal static class WeightShapes
{
    /// <summary>Types <see cref="Kernels.MatMul"/> can multiply and dequantize.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q4_K or GgmlType.Q6_K;

    public static void Validate(string source, ModelConfig c, IReadOnlyDictionary<string, Tensor> tensors)
    {
        void Check(bool ok, string problem)
        {
            if (!ok)
            {
                throw new ModelFormatException(source, problem);
            }
        }

        Check(c.Dim > 0 && c.HiddenDim > 0 && c.Layers > 0 && c.Heads > 0 && c.KvHeads > 0 && c.VocabSize > 0 && c.HeadDim > 0,
            $"impossible config: dim {c.Dim}, hidden {c.HiddenDim}, layers {c.Layers}, heads {c.Heads}, kv heads {c.KvHeads}, vocab {c.VocabSize}, head dim {c.HeadDim}");
        Check(c.Heads % c.KvHeads == 0, $"impossible config: {c.Heads} heads is not a multiple of {c.KvHeads} KV heads");
        Check(c.HeadDim % 2 == 0, $"impossible config: head dim {c.HeadDim} is odd (rotary embeddings need pairs)");
        Check(c.ContextLength > 0, $"impossible config: context length {c.ContextLength}");

        int q = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        void Shape(string name, bool required, params long[] dims)
        {
            if (!tensors.TryGetValue(name, out Tensor? t))
            {
                Check(!required, $"tensor '{name}' is missing");
                return;
            }

            Check(t.Dims.AsSpan().SequenceEqual(dims),
                $"tensor '{name}' has shape [{string.Join(", ", t.Dims)}], expected [{string.Join(", ", dims)}] for this config");
        }

        Shape("token_embd.weight", true, c.Dim, c.VocabSize);
        Shape("output_norm.weight", true, c.Dim);
        Shape("output.weight", !c.TiedEmbeddings, c.Dim, c.VocabSize);
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"blk.{l}.";
            Shape(p + "attn_norm.weight", true, c.Dim);
            Shape(p + "attn_q.weight", true, c.Dim, q);
            Shape(p + "attn_k.weight", true, c.Dim, kv);
            Shape(p + "attn_v.weight", true, c.Dim, kv);
            Shape(p + "attn_output.weight", true, q, c.Dim);
            Shape(p + "ffn_norm.weight", true, c.Dim);
            Shape(p + "ffn_gate.weight", true, c.Dim, c.HiddenDim);
            Shape(p + "ffn_up.weight", true, c.Dim, c.HiddenDim);
            Shape(p + "ffn_down.weight", true, c.HiddenDim, c.Dim);
            Shape(p + "attn_q.bias", c.QkvBias, q);
            Shape(p + "attn_k.bias", c.QkvBias, kv);
            Shape(p + "attn_v.bias", c.QkvBias, kv);
            Shape(p + "attn_q_norm.weight", c.QkNorm, c.HeadDim);
            Shape(p + "attn_k_norm.weight", c.QkNorm, c.HeadDim);
        }

        foreach (Tensor t in tensors.Values)
        {
            Check(IsSupported(t.Type), $"tensor '{t.Name}' has type {t.Type}, which the kernels do not support (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");
        }
    }
}

using System.Runtime.InteropServices;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>
/// A tiny random-weight F32 GGUF of any architecture name, written with the product's <see cref="GgufWriter"/>
/// (for the shapes <see cref="Dynamo.Engine.Models.Synth.SynthModelWriter"/> does not make: Qwen2 bias, Qwen3
/// QK-norm with its own head dim, Llama 3 rope scaling, unknown architectures). Weights are uniform from a seeded
/// generator, scaled by 1/sqrt(fan-in) so activations stay near unit size and attention is far from uniform.
/// </summary>
internal sealed record RandomGgufModel
{
    public string Architecture { get; init; } = "llama";
    public int Dim { get; init; } = 64;
    public int HiddenDim { get; init; } = 96;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    /// <summary>Written as {arch}.attention.key_length when set; otherwise Dim / Heads.</summary>
    public int? HeadDim { get; init; }
    public int VocabSize { get; init; } = 80;
    public bool Tied { get; init; }
    public bool QkvBias { get; init; }
    public bool QkNorm { get; init; }
    public float RopeTheta { get; init; } = 10000f;
    public int Seed { get; init; } = 1;
    /// <summary>A rope_freqs.weight tensor (llama.cpp's form of Llama 3 rope scaling: one divisor per pair).</summary>
    public float[]? RopeFreqs { get; init; }
    /// <summary>Extra metadata (rope scaling keys and such).</summary>
    public Action<GgufWriter>? Metadata { get; init; }

    public string WriteTo(string directory)
    {
        string arch = Architecture;
        int hd = HeadDim ?? Dim / Heads, q = Heads * hd, kv = KvHeads * hd;
        var random = new Random(Seed);
        var tensors = new List<(string Name, long[] Dims, float[] Data)>();
        void Weight(string name, int cols, int rows) => tensors.Add((name, [cols, rows], Fill(cols * rows, 1 / Math.Sqrt(cols), 0)));
        void Norm(string name, int length) => tensors.Add((name, [length], Fill(length, 0.3, 1)));
        void Bias(string name, int length) => tensors.Add((name, [length], Fill(length, 0.5, 0)));
        float[] Fill(int count, double scale, double center)
        {
            var data = new float[count];
            for (int i = 0; i < count; i++)
            {
                data[i] = (float)(center + scale * (2 * random.NextDouble() - 1));
            }

            return data;
        }

        Weight("token_embd.weight", Dim, VocabSize);
        Norm("output_norm.weight", Dim);
        if (!Tied)
        {
            Weight("output.weight", Dim, VocabSize);
        }

        if (RopeFreqs is not null)
        {
            tensors.Add(("rope_freqs.weight", [RopeFreqs.Length], RopeFreqs));
        }

        for (int l = 0; l < Layers; l++)
        {
            string p = $"blk.{l}.";
            Norm(p + "attn_norm.weight", Dim);
            Weight(p + "attn_q.weight", Dim, q);
            Weight(p + "attn_k.weight", Dim, kv);
            Weight(p + "attn_v.weight", Dim, kv);
            Weight(p + "attn_output.weight", q, Dim);
            if (QkvBias)
            {
                Bias(p + "attn_q.bias", q);
                Bias(p + "attn_k.bias", kv);
                Bias(p + "attn_v.bias", kv);
            }

            if (QkNorm)
            {
                Norm(p + "attn_q_norm.weight", hd);
                Norm(p + "attn_k_norm.weight", hd);
            }

            Norm(p + "ffn_norm.weight", Dim);
            Weight(p + "ffn_gate.weight", Dim, HiddenDim);
            Weight(p + "ffn_up.weight", Dim, HiddenDim);
            Weight(p + "ffn_down.weight", HiddenDim, Dim);
        }

        string path = Path.Combine(directory, $"{arch}.gguf");
        using var stream = File.Create(path);
        var gguf = new GgufWriter(stream);
        gguf.Add("general.architecture", arch);
        gguf.Add($"{arch}.embedding_length", (uint)Dim);
        gguf.Add($"{arch}.feed_forward_length", (uint)HiddenDim);
        gguf.Add($"{arch}.block_count", (uint)Layers);
        gguf.Add($"{arch}.attention.head_count", (uint)Heads);
        gguf.Add($"{arch}.attention.head_count_kv", (uint)KvHeads);
        gguf.Add($"{arch}.context_length", 256u);
        gguf.Add($"{arch}.attention.layer_norm_rms_epsilon", 1e-6f);
        gguf.Add($"{arch}.rope.freq_base", RopeTheta);
        if (HeadDim is int keyLength)
        {
            gguf.Add($"{arch}.attention.key_length", (uint)keyLength);
            gguf.Add($"{arch}.attention.value_length", (uint)keyLength);
        }

        Metadata?.Invoke(gguf);
        foreach ((string name, long[] dims, _) in tensors)
        {
            gguf.AddTensor(name, GgmlType.F32, dims);
        }

        gguf.WriteHeader();
        foreach ((_, _, float[] data) in tensors)
        {
            gguf.WriteTensorData(MemoryMarshal.AsBytes(data.AsSpan()));
        }

        gguf.Finish();
        return path;
    }
}

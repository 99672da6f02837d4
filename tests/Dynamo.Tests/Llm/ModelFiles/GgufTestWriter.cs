using System.Text;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Llm.ModelFiles;

/// <summary>Writes small GGUF files for tests (metadata of every type, tensors with given bytes).</summary>
internal sealed class GgufTestWriter
{
    private readonly List<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> _kv = [];
    private readonly List<(string Name, GgmlType Type, long[] Dims, byte[] Data)> _tensors = [];

    public uint Version { get; set; } = 3;
    public int Alignment { get; set; } = 32;

    public GgufTestWriter Add(string key, GgufValueType type, Action<BinaryWriter> write)
    {
        _kv.Add((key, type, write));
        return this;
    }

    public GgufTestWriter String(string key, string value) => Add(key, GgufValueType.String, w => WriteString(w, value));
    public GgufTestWriter UInt(string key, uint value) => Add(key, GgufValueType.UInt32, w => w.Write(value));
    public GgufTestWriter Float(string key, float value) => Add(key, GgufValueType.Float32, w => w.Write(value));

    public GgufTestWriter Strings(string key, string[] values) => Add(key, GgufValueType.Array, w =>
    {
        w.Write((uint)GgufValueType.String);
        w.Write((ulong)values.Length);
        foreach (string s in values)
        {
            WriteString(w, s);
        }
    });

    public GgufTestWriter Tensor(string name, GgmlType type, long[] dims, byte[] data)
    {
        _tensors.Add((name, type, dims, data));
        return this;
    }

    /// <summary>A float tensor of the given shape filled with <paramref name="value"/>.</summary>
    public GgufTestWriter F32(string name, float value, params long[] dims)
    {
        long n = dims.Aggregate(1L, (a, b) => a * b);
        var data = new byte[n * 4];
        for (long i = 0; i < n; i++)
        {
            BitConverter.TryWriteBytes(data.AsSpan((int)(i * 4)), value);
        }

        return Tensor(name, GgmlType.F32, dims, data);
    }

    public static void WriteString(BinaryWriter w, string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)b.Length);
        w.Write(b);
    }

    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        w.Write(GgufFile.Magic);
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_kv.Count);
        foreach ((string key, GgufValueType type, Action<BinaryWriter> write) in _kv)
        {
            WriteString(w, key);
            w.Write((uint)type);
            write(w);
        }

        long offset = 0;
        var offsets = new List<long>();
        foreach ((string name, GgmlType type, long[] dims, byte[] data) in _tensors)
        {
            WriteString(w, name);
            w.Write((uint)dims.Length);
            foreach (long d in dims)
            {
                w.Write((ulong)d);
            }

            w.Write((uint)type);
            w.Write((ulong)offset);
            offsets.Add(offset);
            offset += (data.Length + Alignment - 1) / Alignment * Alignment;
        }

        w.Flush();
        while (ms.Length % Alignment != 0)
        {
            w.Write((byte)0);
        }

        long start = ms.Length;
        for (int i = 0; i < _tensors.Count; i++)
        {
            ms.Position = start + offsets[i];
            w.Write(_tensors[i].Data);
        }

        w.Flush();
        return ms.ToArray();
    }

    public string WriteTo(string directory, string name = "model.gguf")
    {
        string path = Path.Combine(directory, name);
        File.WriteAllBytes(path, ToBytes());
        return path;
    }

    /// <summary>A complete tiny model of the given architecture (dim 32, 1 layer, 2 heads).</summary>
    public static GgufTestWriter TinyModel(string arch, bool tied = true, bool qkvBias = false, bool qkNorm = false)
    {
        const int dim = 32, hidden = 64, vocab = 8;
        var g = new GgufTestWriter()
            .String("general.architecture", arch)
            .UInt($"{arch}.embedding_length", dim)
            .UInt($"{arch}.feed_forward_length", hidden)
            .UInt($"{arch}.block_count", 1)
            .UInt($"{arch}.attention.head_count", 2)
            .UInt($"{arch}.attention.head_count_kv", 1)
            .UInt($"{arch}.context_length", 128)
            .Float($"{arch}.attention.layer_norm_rms_epsilon", 1e-6f)
            .Float($"{arch}.rope.freq_base", 1e6f)
            .Strings("tokenizer.ggml.tokens", ["a", "b", "c", "d", "e", "f", "g", "h"])
            .F32("token_embd.weight", 0.5f, dim, vocab)
            .F32("output_norm.weight", 1f, dim)
            .F32("blk.0.attn_norm.weight", 1f, dim)
            .F32("blk.0.attn_q.weight", 0.1f, dim, dim)
            .F32("blk.0.attn_k.weight", 0.1f, dim, dim / 2)
            .F32("blk.0.attn_v.weight", 0.1f, dim, dim / 2)
            .F32("blk.0.attn_output.weight", 0.1f, dim, dim)
            .F32("blk.0.ffn_norm.weight", 1f, dim)
            .F32("blk.0.ffn_gate.weight", 0.1f, dim, hidden)
            .F32("blk.0.ffn_up.weight", 0.1f, dim, hidden)
            .F32("blk.0.ffn_down.weight", 0.1f, hidden, dim);
        if (!tied)
        {
            g.F32("output.weight", 0.25f, dim, vocab);
        }

        if (qkvBias)
        {
            g.F32("blk.0.attn_q.bias", 0f, dim).F32("blk.0.attn_k.bias", 0f, dim / 2).F32("blk.0.attn_v.bias", 0f, dim / 2);
        }

        if (qkNorm)
        {
            g.F32("blk.0.attn_q_norm.weight", 1f, dim / 2).F32("blk.0.attn_k_norm.weight", 1f, dim / 2);
        }

        return g;
    }
}

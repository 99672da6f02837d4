using System.Globalization;
using System.Runtime.InteropServices;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Parallel;

/// <summary>
/// One tensor-parallel rank's part of a model (Megatron-style): the attention by KV-head groups (Q rows of this
/// rank's heads, K and V rows of its KV heads, their biases, the output projection's columns of those heads), the MLP
/// by its hidden units (gate and up rows, down columns), and the embedding and output projection by vocabulary rows.
/// Norms are whole on every rank. <see cref="Config"/> is the rank's own shape: Heads, KvHeads and HiddenDim are the
/// rank's; Dim, HeadDim and VocabSize stay the model's, so a paged KV cache built from it holds this rank's heads only.
/// Row shards are views into the full model's mapping (only their pages are ever touched); column shards are copied
/// into memory of their own, and the mapped pages they were read from are released, so a rank keeps about 1/N of the
/// sharded weights resident. A column split that cuts through quantization blocks (K-quants: 256 values) keeps this rank's
/// columns as F32 instead (<see cref="Converted"/>). Disposing frees the copies and the full model.
/// </summary>
public sealed unsafe class ShardedWeights : IModelWeights
{
    private readonly IModelWeights _full;
    private readonly Dictionary<string, Tensor> _tensors = [];
    private readonly List<nint> _owned = [];
    private readonly List<string> _converted = [];

    private ShardedWeights(IModelWeights full, int rank, int size)
    {
        _full = full;
        Rank = rank;
        Size = size;
        ModelConfig c = full.Config;
        FullConfig = c;
        Config = c with { Heads = c.Heads / size, KvHeads = c.KvHeads / size, HiddenDim = c.HiddenDim / size, HeadDim = c.HeadDim };
        VocabCount = c.VocabSize / size;
        VocabStart = rank * VocabCount;
    }

    /// <summary>The model as a whole (what TP=1 runs).</summary>
    public ModelConfig FullConfig { get; }

    /// <summary>This rank's shape (see the class summary).</summary>
    public ModelConfig Config { get; }

    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;

    public string Source => _full.Source;

    public int Rank { get; }

    public int Size { get; }

    /// <summary>The first vocabulary row of this rank's embedding and output projection.</summary>
    public int VocabStart { get; }

    /// <summary>Vocabulary rows of this rank (VocabSize / Size).</summary>
    public int VocabCount { get; }

    /// <summary>Bytes of weights this rank holds in memory of its own (the copied column shards).</summary>
    public long CopiedBytes { get; private set; }

    /// <summary>Tensors whose columns this rank keeps as F32 because its split cuts through their quantization blocks.</summary>
    public IReadOnlyList<string> Converted => _converted;

    /// <summary>Bytes of the mapped weights this rank's views cover (touched as they are used).</summary>
    public long ViewBytes { get; private set; }

    /// <summary>
    /// The shard layout in words, identical on every rank of one worker: what ranks compare before they serve
    /// together (with the model file's hash).
    /// </summary>
    public string Layout => Describe(FullConfig, Size);

    /// <summary>The layout <see cref="Create"/> would give for <paramref name="size"/> ranks of <paramref name="config"/>.</summary>
    public static string Describe(ModelConfig config, int size) => string.Create(
        CultureInfo.InvariantCulture,
        $"tp {size}: {config.Heads / size} of {config.Heads} heads, {config.KvHeads / size} of {config.KvHeads} kv heads, {config.HiddenDim / size} of {config.HiddenDim} ffn units, {config.VocabSize / size} of {config.VocabSize} vocabulary rows per rank; {config.Layers} layers, dim {config.Dim}");

    /// <summary>
    /// Rank <paramref name="rank"/>'s part of <paramref name="full"/> for <paramref name="size"/> ranks; takes ownership
    /// of <paramref name="full"/> (disposed when this throws). Throws <see cref="ArgumentException"/> (one line naming what does not divide) when
    /// the model cannot be split that way.
    /// </summary>
    public static ShardedWeights Create(IModelWeights full, int rank, int size)
    {
        ArgumentNullException.ThrowIfNull(full);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, size);
        ShardedWeights? w = null;
        try
        {
            Check(full.Config, size);
            w = new ShardedWeights(full, rank, size);
            w.Split();
            return w;
        }
        catch
        {
            w?.FreeCopies();
            full.Dispose();
            throw;
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> when <paramref name="config"/> cannot be split over <paramref name="size"/> ranks.</summary>
    public static void Check(ModelConfig config, int size)
    {
        ArgumentNullException.ThrowIfNull(config);
        void Divides(int count, string what)
        {
            if (count % size != 0)
            {
                throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--tensor-parallel-size {size}: the model's {count} {what} do not divide by {size}"));
            }
        }

        Divides(config.KvHeads, "KV heads");
        Divides(config.Heads, "attention heads");
        Divides(config.HiddenDim, "feed-forward units");
        Divides(config.VocabSize, "vocabulary rows");
    }

    private void Split()
    {
        ModelConfig c = FullConfig;
        IReadOnlyDictionary<string, Tensor> t = _full.Tensors;
        int hd = c.HeadDim, n = Size, r = Rank;
        int heads = c.Heads / n, kvHeads = c.KvHeads / n, hidden = c.HiddenDim / n;
        Tensor embedding = Rows(t["token_embd.weight"], VocabStart, VocabCount);
        _tensors["token_embd.weight"] = embedding;
        if (!c.TiedEmbeddings)
        {
            _tensors["output.weight"] = Rows(t["output.weight"], VocabStart, VocabCount);
        }

        _tensors["output_norm.weight"] = t["output_norm.weight"];
        if (t.TryGetValue("rope_freqs.weight", out Tensor? freqs))
        {
            _tensors["rope_freqs.weight"] = freqs;
        }

        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"blk.{l}.";
            foreach (string whole in new[] { "attn_norm.weight", "ffn_norm.weight", "attn_q_norm.weight", "attn_k_norm.weight" })
            {
                if (t.TryGetValue(p + whole, out Tensor? norm))
                {
                    _tensors[p + whole] = norm;
                }
            }

            _tensors[p + "attn_q.weight"] = Rows(t[p + "attn_q.weight"], r * heads * hd, heads * hd);
            _tensors[p + "attn_k.weight"] = Rows(t[p + "attn_k.weight"], r * kvHeads * hd, kvHeads * hd);
            _tensors[p + "attn_v.weight"] = Rows(t[p + "attn_v.weight"], r * kvHeads * hd, kvHeads * hd);
            if (t.TryGetValue(p + "attn_q.bias", out Tensor? bq))
            {
                _tensors[p + "attn_q.bias"] = Rows(bq, r * heads * hd, heads * hd);
                _tensors[p + "attn_k.bias"] = Rows(t[p + "attn_k.bias"], r * kvHeads * hd, kvHeads * hd);
                _tensors[p + "attn_v.bias"] = Rows(t[p + "attn_v.bias"], r * kvHeads * hd, kvHeads * hd);
            }

            _tensors[p + "attn_output.weight"] = Columns(t[p + "attn_output.weight"], r * heads * hd, heads * hd);
            _tensors[p + "ffn_gate.weight"] = Rows(t[p + "ffn_gate.weight"], r * hidden, hidden);
            _tensors[p + "ffn_up.weight"] = Rows(t[p + "ffn_up.weight"], r * hidden, hidden);
            _tensors[p + "ffn_down.weight"] = Columns(t[p + "ffn_down.weight"], r * hidden, hidden);
        }
    }

    /// <summary>Rows [first, first + count) of a matrix, or elements of a vector: a view.</summary>
    private Tensor Rows(Tensor t, int first, int count)
    {
        if (t.Dims.Length == 1)
        {
            long bytes = GgmlTypeInfo.ByteSize(t.Type, count);
            ViewBytes += bytes;
            return new Tensor(t.Name, t.Type, [count], t.Data + GgmlTypeInfo.ByteSize(t.Type, first), bytes);
        }

        long rowBytes = GgmlTypeInfo.ByteSize(t.Type, t.Cols);
        ViewBytes += count * rowBytes;
        return new Tensor(t.Name, t.Type, [t.Cols, count], t.Data + first * rowBytes, count * rowBytes);
    }

    /// <summary>Columns [first, first + count) of every row of a matrix: a copy (whole quantization blocks only).</summary>
    private Tensor Columns(Tensor t, int first, int count)
    {
        int block = GgmlTypeInfo.BlockSize(t.Type);
        if (first % block != 0 || count % block != 0)
        {
            return FloatColumns(t, first, count, block);
        }

        long rowBytes = GgmlTypeInfo.ByteSize(t.Type, t.Cols);
        long shardBytes = GgmlTypeInfo.ByteSize(t.Type, count);
        long offset = GgmlTypeInfo.ByteSize(t.Type, first);
        int rows = t.Rows;
        byte* copy = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * shardBytes), 64);
        _owned.Add((nint)copy);
        for (int row = 0; row < rows; row++)
        {
            Buffer.MemoryCopy(t.Data + row * rowBytes + offset, copy + row * shardBytes, shardBytes, shardBytes);
        }

        CopiedBytes += rows * shardBytes;
        PageRelease.DontNeed(t.Data, t.ByteLength);
        return new Tensor(t.Name, t.Type, [count, rows], copy, rows * shardBytes);
    }

    /// <summary>
    /// Columns that cut through quantization blocks: each row dequantized and this rank's part kept as F32 (the values
    /// are the file's; the product then runs on floats instead of the quantized kernel). Said in <see cref="Converted"/>.
    /// </summary>
    private Tensor FloatColumns(Tensor t, int first, int count, int block)
    {
        int rows = t.Rows;
        long shardBytes = (long)count * sizeof(float);
        byte* copy = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * shardBytes), 64);
        _owned.Add((nint)copy);
        float[] row = new float[t.Cols];
        for (int r = 0; r < rows; r++)
        {
            Kernels.MatMul.DequantizeRow(t, r, row);
            row.AsSpan(first, count).CopyTo(new Span<float>(copy + r * shardBytes, count));
        }

        CopiedBytes += rows * shardBytes;
        _converted.Add(string.Create(CultureInfo.InvariantCulture, $"{t.Name} ({t.Type}, blocks of {block}: columns {first}..{first + count - 1} kept as F32)"));
        PageRelease.DontNeed(t.Data, t.ByteLength);
        return new Tensor(t.Name, GgmlType.F32, [count, rows], copy, rows * shardBytes);
    }

    private void FreeCopies()
    {
        foreach (nint p in _owned)
        {
            NativeMemory.AlignedFree((void*)p);
        }

        _owned.Clear();
    }

    public void Dispose()
    {
        FreeCopies();
        _full.Dispose();
    }
}

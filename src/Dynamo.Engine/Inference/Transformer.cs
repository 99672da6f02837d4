using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;

namespace Dynamo.Engine.Inference;

/// <summary>
/// The forward pass of a Llama-family decoder (Llama 2/3, Mistral, TinyLlama, SmolLM, Qwen2/Qwen3):
/// RMSNorm, grouped-query attention with rotary embeddings (interleaved or half-split), optional QKV
/// bias and QK-norm, SwiGLU feed-forward, tied or separate output projection. All tokens of one call
/// go through each weight matrix together (one matrix-matrix product per weight).
/// One instance runs one forward at a time; its scratch buffers are allocated once.
/// </summary>
public sealed unsafe class Transformer : IDisposable
{
    private readonly IModelWeights _weights;
    private readonly Layer[] _layers;
    private readonly Tensor _embedding;
    private readonly Tensor _output;
    private readonly float[] _outputNorm;
    private readonly RotaryEmbedding _rope;
    private readonly int _maxBatch;
    private readonly int _qDim;
    private readonly int _kvDim;

    // Scratch, [maxBatch x width] each.
    private readonly float[] _x;
    private readonly float[] _xb;
    private readonly float[] _q;
    private readonly float[] _k;
    private readonly float[] _v;
    private readonly float[] _att;
    private readonly float[] _gate;
    private readonly float[] _up;
    private readonly float[] _cos;
    private readonly float[] _sin;

    public Transformer(IModelWeights weights, int maxBatch = 128)
    {
        _weights = weights;
        ModelConfig c = weights.Config;
        Config = c;
        _maxBatch = maxBatch;
        _qDim = c.Heads * c.HeadDim;
        _kvDim = c.KvHeads * c.HeadDim;
        IReadOnlyDictionary<string, Tensor> t = weights.Tensors;
        _embedding = t["token_embd.weight"];
        _output = c.TiedEmbeddings ? _embedding : t["output.weight"];
        _outputNorm = ToFloats(t["output_norm.weight"]);
        _layers = new Layer[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"blk.{l}.";
            _layers[l] = new Layer
            {
                AttnNorm = ToFloats(t[p + "attn_norm.weight"]),
                Wq = t[p + "attn_q.weight"],
                Wk = t[p + "attn_k.weight"],
                Wv = t[p + "attn_v.weight"],
                Wo = t[p + "attn_output.weight"],
                Bq = t.TryGetValue(p + "attn_q.bias", out Tensor? bq) ? ToFloats(bq) : null,
                Bk = t.TryGetValue(p + "attn_k.bias", out Tensor? bk) ? ToFloats(bk) : null,
                Bv = t.TryGetValue(p + "attn_v.bias", out Tensor? bv) ? ToFloats(bv) : null,
                QNorm = t.TryGetValue(p + "attn_q_norm.weight", out Tensor? qn) ? ToFloats(qn) : null,
                KNorm = t.TryGetValue(p + "attn_k_norm.weight", out Tensor? kn) ? ToFloats(kn) : null,
                FfnNorm = ToFloats(t[p + "ffn_norm.weight"]),
                WGate = t[p + "ffn_gate.weight"],
                WUp = t[p + "ffn_up.weight"],
                WDown = t[p + "ffn_down.weight"],
            };
        }

        float[]? freqFactors = t.TryGetValue("rope_freqs.weight", out Tensor? rf) ? ToFloats(rf) : null;
        _rope = new RotaryEmbedding(c, freqFactors);
        _x = new float[maxBatch * c.Dim];
        _xb = new float[maxBatch * Math.Max(c.Dim, _qDim)];
        _q = new float[maxBatch * _qDim];
        _k = new float[maxBatch * _kvDim];
        _v = new float[maxBatch * _kvDim];
        _att = new float[maxBatch * _qDim];
        _gate = new float[maxBatch * c.HiddenDim];
        _up = new float[maxBatch * c.HiddenDim];
        _cos = new float[maxBatch * c.HeadDim / 2];
        _sin = new float[maxBatch * c.HeadDim / 2];
    }

    public ModelConfig Config { get; }

    public IModelWeights Weights => _weights;

    /// <summary>Tokens one call processes at most in one pass (longer inputs are split).</summary>
    public int MaxBatch => _maxBatch;

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions startPos, startPos+1, ... storing their keys and values
    /// in <paramref name="cache"/>. Writes the logits of the last token into <paramref name="logits"/>
    /// (VocabSize values), or of every token (tokens.Length x VocabSize) with <paramref name="allLogits"/>.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, int startPos, KvCache cache, Span<float> logits, bool allLogits = false)
    {
        int n = tokens.Length;
        int vocab = Config.VocabSize;
        if (n == 0)
        {
            throw new ArgumentException("no tokens to run", nameof(tokens));
        }

        if (startPos < 0 || startPos + n > cache.Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{startPos + n - 1} do not fit a KV cache of {cache.Capacity}");
        }

        if (logits.Length < (allLogits ? (long)n * vocab : vocab))
        {
            throw new ArgumentException("logits buffer too small", nameof(logits));
        }

        for (int done = 0; done < n; done += _maxBatch)
        {
            int chunk = Math.Min(_maxBatch, n - done);
            bool last = done + chunk == n;
            Span<float> dest = allLogits ? logits.Slice(done * vocab, chunk * vocab) : logits;
            ForwardChunk(tokens.Slice(done, chunk), startPos + done, cache, dest, allLogits ? chunk : last ? 1 : 0);
        }
    }

    private void ForwardChunk(ReadOnlySpan<int> tokens, int startPos, KvCache cache, Span<float> logits, int logitRows)
    {
        ModelConfig c = Config;
        int n = tokens.Length, dim = c.Dim, hd = c.HeadDim, half = hd / 2;
        Span<float> x = _x.AsSpan(0, n * dim);
        Span<float> xb = _xb.AsSpan(0, n * dim);
        for (int t = 0; t < n; t++)
        {
            int id = tokens[t];
            if ((uint)id >= (uint)c.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {id} is outside the vocabulary of {c.VocabSize}");
            }

            MatMul.DequantizeRow(_embedding, id, x.Slice(t * dim, dim));
            _rope.Angles(startPos + t, _cos.AsSpan(t * half, half), _sin.AsSpan(t * half, half));
        }

        Span<float> q = _q.AsSpan(0, n * _qDim), k = _k.AsSpan(0, n * _kvDim), v = _v.AsSpan(0, n * _kvDim);
        Span<float> att = _att.AsSpan(0, n * _qDim);
        Span<float> gate = _gate.AsSpan(0, n * c.HiddenDim), up = _up.AsSpan(0, n * c.HiddenDim);
        for (int l = 0; l < _layers.Length; l++)
        {
            Layer layer = _layers[l];
            for (int t = 0; t < n; t++)
            {
                Elementwise.RmsNorm(x.Slice(t * dim, dim), layer.AttnNorm, c.RmsNormEps, xb.Slice(t * dim, dim));
            }

            MatMul.Multiply(layer.Wq, xb, q, n);
            MatMul.Multiply(layer.Wk, xb, k, n);
            MatMul.Multiply(layer.Wv, xb, v, n);
            float[] keys = cache.Keys[l], values = cache.Values[l];
            for (int t = 0; t < n; t++)
            {
                Span<float> qt = q.Slice(t * _qDim, _qDim), kt = k.Slice(t * _kvDim, _kvDim), vt = v.Slice(t * _kvDim, _kvDim);
                if (layer.Bq is not null)
                {
                    TensorPrimitives.Add(qt, layer.Bq, qt);
                    TensorPrimitives.Add(kt, layer.Bk!, kt);
                    TensorPrimitives.Add(vt, layer.Bv!, vt);
                }

                if (layer.QNorm is not null)
                {
                    for (int h = 0; h < c.Heads; h++)
                    {
                        Elementwise.RmsNorm(qt.Slice(h * hd, hd), layer.QNorm, c.RmsNormEps, qt.Slice(h * hd, hd));
                    }

                    for (int h = 0; h < c.KvHeads; h++)
                    {
                        Elementwise.RmsNorm(kt.Slice(h * hd, hd), layer.KNorm!, c.RmsNormEps, kt.Slice(h * hd, hd));
                    }
                }

                ReadOnlySpan<float> cos = _cos.AsSpan(t * half, half), sin = _sin.AsSpan(t * half, half);
                _rope.Apply(qt, c.Heads, cos, sin);
                _rope.Apply(kt, c.KvHeads, cos, sin);
                int pos = startPos + t;
                kt.CopyTo(keys.AsSpan(pos * _kvDim, _kvDim));
                vt.CopyTo(values.AsSpan(pos * _kvDim, _kvDim));
            }

            Attention(n, startPos, keys, values);
            MatMul.Multiply(layer.Wo, att, xb, n);
            TensorPrimitives.Add(x, xb, x);

            for (int t = 0; t < n; t++)
            {
                Elementwise.RmsNorm(x.Slice(t * dim, dim), layer.FfnNorm, c.RmsNormEps, xb.Slice(t * dim, dim));
            }

            MatMul.Multiply(layer.WGate, xb, gate, n);
            MatMul.Multiply(layer.WUp, xb, up, n);
            Elementwise.SwiGlu(gate, up);
            MatMul.Multiply(layer.WDown, gate, xb, n);
            TensorPrimitives.Add(x, xb, x);
        }

        if (logitRows == 0)
        {
            return;
        }

        int first = n - logitRows;
        for (int t = first; t < n; t++)
        {
            Elementwise.RmsNorm(x.Slice(t * dim, dim), _outputNorm, c.RmsNormEps, xb.Slice((t - first) * dim, dim));
        }

        MatMul.Multiply(_output, xb[..(logitRows * dim)], logits, logitRows);
    }

    /// <summary>Causal attention of the chunk's queries over the cached keys and values, split over (token, head) pairs.</summary>
    private void Attention(int n, int startPos, float[] keys, float[] values)
    {
        fixed (float* pq = _q, pk = keys, pv = values, pa = _att)
        {
            var job = new AttentionJob
            {
                Q = pq,
                K = pk,
                V = pv,
                Out = pa,
                Heads = Config.Heads,
                Group = Config.Heads / Config.KvHeads,
                HeadDim = Config.HeadDim,
                QDim = _qDim,
                KvDim = _kvDim,
                StartPos = startPos,
                Scale = 1f / MathF.Sqrt(Config.HeadDim),
            };
            int chunks = n * Config.Heads;
            WorkerPool? pool = (long)chunks * (startPos + n) * Config.HeadDim >= 1 << 14 ? KernelThreads.Pool : null;
            if (pool is null)
            {
                for (int i = 0; i < chunks; i++)
                {
                    AttentionHead(&job, i);
                }
            }
            else
            {
                pool.Run(&AttentionHead, &job, chunks);
            }
        }
    }

    [ThreadStatic]
    private static float[]? _scores;

    private static void AttentionHead(void* context, int index)
    {
        AttentionJob* job = (AttentionJob*)context;
        int t = index / job->Heads, h = index % job->Heads;
        int hd = job->HeadDim, len = job->StartPos + t + 1;
        float[] scores = _scores is { } s && s.Length >= len ? s : _scores = new float[Math.Max(len, 1024)];
        var qh = new ReadOnlySpan<float>(job->Q + (long)t * job->QDim + h * hd, hd);
        int kvOffset = h / job->Group * hd;
        Span<float> sc = scores.AsSpan(0, len);
        for (int p = 0; p < len; p++)
        {
            sc[p] = TensorPrimitives.Dot(qh, new ReadOnlySpan<float>(job->K + (long)p * job->KvDim + kvOffset, hd)) * job->Scale;
        }

        Elementwise.Softmax(sc);
        var o = new Span<float>(job->Out + (long)t * job->QDim + h * hd, hd);
        o.Clear();
        for (int p = 0; p < len; p++)
        {
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(job->V + (long)p * job->KvDim + kvOffset, hd), sc[p], o, o);
        }
    }

    private static float[] ToFloats(Tensor t)
    {
        var a = new float[t.ElementCount];
        if (t.Dims.Length == 1)
        {
            MatMul.DequantizeRow(t, 0, a);
        }
        else
        {
            for (int r = 0; r < t.Rows; r++)
            {
                MatMul.DequantizeRow(t, r, a.AsSpan(r * t.Cols, t.Cols));
            }
        }

        return a;
    }

    public void Dispose() => _weights.Dispose();

    private struct AttentionJob
    {
        public float* Q;
        public float* K;
        public float* V;
        public float* Out;
        public int Heads;
        public int Group;
        public int HeadDim;
        public int QDim;
        public int KvDim;
        public int StartPos;
        public float Scale;
    }

    private sealed class Layer
    {
        public required float[] AttnNorm { get; init; }
        public required Tensor Wq { get; init; }
        public required Tensor Wk { get; init; }
        public required Tensor Wv { get; init; }
        public required Tensor Wo { get; init; }
        public float[]? Bq { get; init; }
        public float[]? Bk { get; init; }
        public float[]? Bv { get; init; }
        public float[]? QNorm { get; init; }
        public float[]? KNorm { get; init; }
        public required float[] FfnNorm { get; init; }
        public required Tensor WGate { get; init; }
        public required Tensor WUp { get; init; }
        public required Tensor WDown { get; init; }
    }
}

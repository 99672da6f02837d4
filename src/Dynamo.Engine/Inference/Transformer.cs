using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Parallel;
using Dynamo.Llm.Parallel;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Engine.Inference;

/// <summary>
/// The forward pass of a Llama-family decoder (Llama 2/3, Mistral, TinyLlama, SmolLM, Qwen2/Qwen3):
/// RMSNorm, grouped-query attention with rotary embeddings (interleaved or half-split), optional QKV
/// bias and QK-norm, SwiGLU feed-forward, tied or separate output projection. All tokens of one call
/// go through each weight matrix together (one matrix-matrix product per weight), whatever sequences they
/// belong to; keys and values live in a <see cref="PagedKvCache"/> (a <see cref="KvCache"/> is one of one block).
/// One instance runs one forward at a time; its scratch buffers are allocated once.
/// With <see cref="ShardedWeights"/> and an <see cref="ICollectiveGroup"/> it is one rank of a tensor-parallel model
/// (Transformer.TensorParallel.cs): rank 0 is driven by the engine and broadcasts each pass's plan; the other ranks
/// run <see cref="Follow"/>. With <see cref="PipelineStageWeights"/> it is one stage of a pipeline-parallel model
/// (Transformer.PipelineParallel.cs): its layers only, activations passed from stage to stage.
/// </summary>
public sealed unsafe partial class Transformer : IDisposable
{
    private readonly IModelWeights _weights;
    private readonly Layer[] _layers;
    private readonly Tensor? _embedding;
    private readonly Tensor? _output;
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

    // Per chunk token: its position, and where its sequence's block table starts in _tables (the chunk's
    // block tables copied end to end; grown when a chunk needs more). Chunk tokens whose logits are wanted.
    private readonly int[] _pos;
    private readonly int[] _tableAt;
    private readonly int[] _logitTokens;
    private int[] _tables;
    private int _tableCount;

    // An F16 cache's blocks that a pass reads many times (prefill, grouped-query heads), converted to floats once per layer
    // (exact: the attention gives the same bits as on the halves); _shadowSlot maps a pool block to its slot (-1: none),
    // _shadowTables is _tables in slots. Grown, never shrunk, to twice what a pass needed.
    private float[] _shadowKeys = [];
    private float[] _shadowValues = [];
    private int[] _shadowSlot = [];
    private int[] _shadowTables = [];
    private int _shadowCount;
    private readonly SequenceSlice[] _single = new SequenceSlice[1];

    /// <param name="weights">The model, or one rank's part of it (<see cref="ShardedWeights"/>, with <paramref name="group"/>); owned from now on.</param>
    /// <param name="maxBatch">Tokens one pass runs at most; every rank of a group must use the same.</param>
    /// <param name="group">The ranks of a tensor-parallel model; null (or a group of one) for the whole model in this process.</param>
    public Transformer(IModelWeights weights, int maxBatch = 128, ICollectiveGroup? group = null)
    {
        _weights = weights;
        ModelConfig c = weights.Config;
        Config = c;
        (_group, _shard, _vocabStart, _vocabCount) = Partition(weights, group);
        _pipeline = Stage(weights, group);
        _maxBatch = maxBatch;
        _qDim = c.Heads * c.HeadDim;
        _kvDim = c.KvHeads * c.HeadDim;
        IReadOnlyDictionary<string, Tensor> t = weights.Tensors;
        // A pipeline stage holds the embedding (first stage) or the output (last stage) only; a whole model both.
        _embedding = _pipeline is { IsFirst: false } && !(_pipeline.IsLast && c.TiedEmbeddings) ? null : t["token_embd.weight"];
        _output = _pipeline is { IsLast: false } ? null : c.TiedEmbeddings ? _embedding : t["output.weight"];
        _outputNorm = _pipeline is { IsLast: false } ? [] : ToFloats(t["output_norm.weight"]);
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
        _pos = new int[maxBatch];
        _tableAt = new int[maxBatch];
        _logitTokens = new int[maxBatch];
        _tables = new int[Math.Max(256, maxBatch)];
        if (_shard is not null)
        {
            _logitShard = new float[maxBatch * _vocabCount];
            _gathered = _group!.Rank == 0 ? new float[(long)maxBatch * c.VocabSize] : [];
        }

        if (_pipeline is not null && _group is not null)
        {
            _sender = new PipelineSender(_group);
            MicroBatches = _group.Size;
        }
    }

    public ModelConfig Config { get; }

    public IModelWeights Weights => _weights;

    /// <summary>Tokens one call processes at most in one pass (longer inputs are split).</summary>
    public int MaxBatch => _maxBatch;

    /// <summary>
    /// Runs <paramref name="tokens"/> at positions startPos, startPos+1, ... storing their keys and values
    /// in <paramref name="cache"/>. Writes the logits of the last token into <paramref name="logits"/>
    /// (VocabSize values), or of every token (tokens.Length x VocabSize) with <paramref name="allLogits"/>.
    /// The paged forward pass with one sequence whose block table is the cache's one block.
    /// </summary>
    public void Forward(ReadOnlySpan<int> tokens, int startPos, SequenceKvCache cache, Span<float> logits, bool allLogits = false)
    {
        ArgumentNullException.ThrowIfNull(cache);
        int n = tokens.Length;
        int vocab = Config.VocabSize;
        if (n == 0)
        {
            throw new ArgumentException("no tokens to run", nameof(tokens));
        }

        if (startPos < 0 || (long)startPos + n > cache.Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(startPos), $"positions {startPos}..{(long)startPos + n - 1} do not fit a KV cache of {cache.Capacity}");
        }

        if (logits.Length < (allLogits ? (long)n * vocab : vocab))
        {
            throw new ArgumentException("logits buffer too small", nameof(logits));
        }

        CheckCache(cache.Paged);
        CheckTokenIds(tokens);
        _single[0] = new SequenceSlice(0, n, startPos, cache.BlockTable, WantLogits: true);
        Lead(tokens, _single, cache.Paged, cache.Id, allLogits);
        Run(tokens, _single, cache.Paged, logits, everyToken: allLogits, PassMicroBatches);
    }

    /// <summary>
    /// Runs several sequences in one pass (continuous batching): slice i's tokens,
    /// <c>tokens[TokenStart .. TokenStart + TokenCount)</c>, at positions StartPos.. of that sequence, their keys and
    /// values stored in its blocks of <paramref name="cache"/> and each token attending to its own sequence's
    /// positions 0..p. All tokens go through each weight matrix together (split into passes of <see cref="MaxBatch"/>
    /// tokens; a pass sees the keys and values the previous one stored). For each slice with WantLogits, the logits
    /// of its last token are written as one row of VocabSize floats into <paramref name="logits"/>, rows in slice order.
    /// A sequence's logits are the same bits whether it runs alone or with others, in one pass or in pieces, with any
    /// block size (given matrix kernels that compute a row the same way at any batch position).
    /// </summary>
    /// <param name="tokens">The tokens of all slices, concatenated in slice order.</param>
    /// <param name="sequences">One slice per sequence; their token ranges cover <paramref name="tokens"/> in order.</param>
    /// <param name="cache">The block pool the slices' block tables point into.</param>
    /// <param name="logits">At least (slices with WantLogits) x VocabSize floats.</param>
    public void Forward(ReadOnlySpan<int> tokens, ReadOnlySpan<SequenceSlice> sequences, PagedKvCache cache, Span<float> logits)
    {
        ArgumentNullException.ThrowIfNull(cache);
        CheckCache(cache);
        int rows = CheckSlices(tokens.Length, sequences, cache);
        CheckTokenIds(tokens);
        if (logits.Length < (long)rows * Config.VocabSize)
        {
            throw new ArgumentException($"logits buffer too small: {rows} rows of {Config.VocabSize} need {(long)rows * Config.VocabSize} floats, got {logits.Length}", nameof(logits));
        }

        Lead(tokens, sequences, cache, scratchId: 0, everyToken: false);
        Run(tokens, sequences, cache, logits, everyToken: false, PassMicroBatches);
    }

    /// <summary>
    /// Runs a few throw-away forward passes (a prefill of up to 64 tokens, then single-token steps for
    /// about <paramref name="budget"/>, at least 8 and at most 64) on a cache of its own, so that the
    /// JIT has compiled and optimised the kernels' paths before the first request. Touches no serving
    /// state (the engine's KV pool, prefix cache and events are elsewhere). <paramref name="kvDtype"/>: the KV cache
    /// element type the passes to come use (its attention kernels are the ones warmed). Returns the time it took.
    /// </summary>
    public TimeSpan WarmUp(TimeSpan budget, KvCacheDtype kvDtype = KvCacheDtype.F16)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        int prefill = Math.Min(Math.Min(64, _maxBatch), Config.ContextLength / 2);
        int steps = Math.Min(64, Config.ContextLength - prefill - 1);
        var cache = new SequenceKvCache(Config, prefill + steps, kvDtype);
        var logits = new float[Config.VocabSize];
        int[] tokens = [.. Enumerable.Range(0, prefill).Select(i => (i * 7919 + 1) % Config.VocabSize)];
        Forward(tokens, 0, cache, logits);
        for (int i = 0; i < steps; i++)
        {
            Forward([(i * 31 + 3) % Config.VocabSize], prefill + i, cache, logits);
            if (i >= 8 && System.Diagnostics.Stopwatch.GetElapsedTime(start) > budget)
            {
                break;
            }
        }

        return System.Diagnostics.Stopwatch.GetElapsedTime(start);
    }

    /// <summary>
    /// Times throw-away passes on a cache of its own (after <see cref="WarmUp"/>, which compiles them): a prefill of up to 32
    /// tokens and a one-token pass after it, the fastest of three each, and makes them a first <see cref="StepCost"/> for the
    /// serving engine's step-time budget (<see cref="Serving.EngineOptions.StepCostSeed"/>): the one-token pass is a step's
    /// fixed cost, each further prefill token costs (prefill - one-token) / (tokens - 1), and a decoding sequence is taken to
    /// cost what a prefill token does (both are one row through the weights) until the engine's own steps tell them apart.
    /// </summary>
    public StepCost MeasureStepCost()
    {
        int prefill = Math.Max(2, Math.Min(Math.Min(32, _maxBatch), Config.ContextLength - 1));
        var cache = new SequenceKvCache(Config, prefill + 1);
        var logits = new float[Config.VocabSize];
        int[] tokens = [.. Enumerable.Range(0, prefill).Select(i => (i * 7919 + 1) % Config.VocabSize)];
        double prefillMs = double.MaxValue, oneMs = double.MaxValue;
        for (int r = 0; r < 3; r++)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            Forward(tokens, 0, cache, logits);
            prefillMs = Math.Min(prefillMs, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            start = System.Diagnostics.Stopwatch.GetTimestamp();
            Forward(tokens.AsSpan(0, 1), prefill, cache, logits);
            oneMs = Math.Min(oneMs, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }

        double perToken = Math.Max(0, (prefillMs - oneMs) / (prefill - 1));
        return new StepCost(oneMs, perToken, perToken);
    }

    /// <summary>When set, every forward pass adds its time per phase to it (bench forward --profile); null (the default) costs nothing.</summary>
    public ForwardProfile? Profile { get; set; }

    private void CheckCache(PagedKvCache cache)
    {
        ModelConfig c = Config;
        if (cache.Layers != c.Layers || cache.KvHeads != c.KvHeads || cache.HeadDim != c.HeadDim)
        {
            throw new ArgumentException($"the KV cache holds {cache.Layers} layers x {cache.KvHeads} kv heads x {cache.HeadDim}; this model has {c.Layers} x {c.KvHeads} x {c.HeadDim}", nameof(cache));
        }
    }

    private void CheckTokenIds(ReadOnlySpan<int> tokens)
    {
        for (int t = 0; t < tokens.Length; t++)
        {
            if ((uint)tokens[t] >= (uint)Config.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {tokens[t]} (at {t}) is outside the vocabulary of {Config.VocabSize}");
            }
        }
    }

    /// <summary>Validates the slices against the tokens and the pool; returns how many logit rows they ask for.</summary>
    private static int CheckSlices(int tokenCount, ReadOnlySpan<SequenceSlice> sequences, PagedKvCache cache)
    {
        if (sequences.IsEmpty)
        {
            throw new ArgumentException("no sequences to run", nameof(sequences));
        }

        int next = 0, rows = 0, bs = cache.BlockSize;
        for (int i = 0; i < sequences.Length; i++)
        {
            SequenceSlice s = sequences[i];
            if (s.TokenCount < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(sequences), $"sequence {i} has {s.TokenCount} tokens; a slice runs at least 1");
            }

            if (s.TokenStart != next)
            {
                string expected = i == 0 ? "the first slice must start at token 0" : $"slice {i - 1} ends at token {next}";
                throw new ArgumentException($"sequence {i} starts at token {s.TokenStart}, but {expected}: slices must cover the tokens in order, without gaps or overlaps", nameof(sequences));
            }

            if ((long)s.TokenStart + s.TokenCount > tokenCount)
            {
                throw new ArgumentException($"sequence {i} covers tokens {s.TokenStart}..{(long)s.TokenStart + s.TokenCount - 1}, but only {tokenCount} tokens were given", nameof(sequences));
            }

            if (s.StartPos < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(sequences), $"sequence {i} starts at position {s.StartPos}");
            }

            if (s.BlockTable is null)
            {
                throw new ArgumentNullException(nameof(sequences), $"sequence {i} has no block table");
            }

            long end = (long)s.StartPos + s.TokenCount;
            long needed = (end + bs - 1) / bs;
            if (needed > s.BlockTable.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(sequences), $"sequence {i}: positions {s.StartPos}..{end - 1} need {needed} blocks of {bs} tokens; its block table has {s.BlockTable.Length}");
            }

            for (int b = 0; b < needed; b++)
            {
                if ((uint)s.BlockTable[b] >= (uint)cache.BlockCount)
                {
                    throw new ArgumentOutOfRangeException(nameof(sequences), $"sequence {i}: block table entry {b} is block {s.BlockTable[b]}, outside the pool of {cache.BlockCount} blocks");
                }
            }

            next += s.TokenCount;
            rows += s.WantLogits ? 1 : 0;
        }

        if (next != tokenCount)
        {
            throw new ArgumentException($"the slices cover {next} tokens, but {tokenCount} were given", nameof(sequences));
        }

        return rows;
    }

    /// <summary>
    /// Splits the validated slices into passes of at most <see cref="MaxBatch"/> tokens (a slice may be cut between
    /// passes) and runs them in order. Logit rows: the last token of each slice that wants them, or every token with
    /// <paramref name="everyToken"/> (the single-sequence all-logits form).
    /// </summary>
    private void Run(ReadOnlySpan<int> tokens, ReadOnlySpan<SequenceSlice> sequences, PagedKvCache cache, Span<float> logits, bool everyToken, int microBatches = 1)
    {
        int vocab = Config.VocabSize, bs = cache.BlockSize;
        int slice = 0, within = 0, row = 0;

        // Pipeline stages: passes of at most 1/microBatches of the tokens, so that the stages work on different ones at once.
        int passTokens = Math.Min(_maxBatch, (tokens.Length + microBatches - 1) / microBatches);
        _pendingLogits.Clear();
        for (int done = 0; done < tokens.Length;)
        {
            int n = Math.Min(passTokens, tokens.Length - done);
            int tables = 0, logitRows = 0;
            long attended = 0;
            for (int t = 0; t < n;)
            {
                SequenceSlice s = sequences[slice];
                int take = Math.Min(s.TokenCount - within, n - t);
                int first = s.StartPos + within;
                int blocks = (int)(((long)first + take + bs - 1) / bs);
                if (_tables.Length < tables + blocks)
                {
                    Array.Resize(ref _tables, Math.Max(tables + blocks, 2 * _tables.Length));
                }

                s.BlockTable.AsSpan(0, blocks).CopyTo(_tables.AsSpan(tables));
                for (int i = 0; i < take; i++, t++)
                {
                    _pos[t] = first + i;
                    _tableAt[t] = tables;
                    attended += first + i + 1;
                    if (everyToken)
                    {
                        _logitTokens[logitRows++] = t;
                    }
                }

                tables += blocks;
                within += take;
                if (within == s.TokenCount)
                {
                    if (s.WantLogits && !everyToken)
                    {
                        _logitTokens[logitRows++] = t - 1;
                    }

                    slice++;
                    within = 0;
                }
            }

            // A follower's logits stay on rank 0 (it passes none); a pipeline's come from the last stage once rank 0's part is done.
            if (_pipeline is { IsFirst: true } && logitRows > 0)
            {
                _pendingLogits.Add((row, logitRows));
            }

            _tableCount = tables;
            _shadowCount = cache.Dtype == KvCacheDtype.F16 ? ShadowSlots(bs, attended) : 0;
            ForwardChunk(tokens.Slice(done, n), cache, attended, logitRows, logits.IsEmpty || _pipeline is not null ? Span<float>.Empty : logits.Slice(row * vocab, logitRows * vocab));
            row += logitRows;
            done += n;
        }

        if (_pipeline is not null)
        {
            FinishPass(logits);
        }
    }

    /// <summary>
    /// One pass: token t of the chunk runs at position _pos[t] of the sequence whose block table starts at
    /// _tables[_tableAt[t]]; the logits of tokens _logitTokens[0..logitRows) go to <paramref name="logits"/>.
    /// </summary>
    private void ForwardChunk(ReadOnlySpan<int> tokens, PagedKvCache cache, long attended, int logitRows, Span<float> logits)
    {
        ModelConfig c = Config;
        int n = tokens.Length, dim = c.Dim, hd = c.HeadDim, half = hd / 2, bs = cache.BlockSize;
        Span<float> x = _x.AsSpan(0, n * dim);
        Span<float> xb = _xb.AsSpan(0, n * dim);
        ForwardProfile? profile = Profile;
        profile?.Start();
        for (int t = 0; t < n; t++)
        {
            _rope.Angles(_pos[t], _cos.AsSpan(t * half, half), _sin.AsSpan(t * half, half));
        }

        if (_pipeline is { IsFirst: false })
        {
            // A later stage starts from the previous stage's hidden states.
            ReceiveActivations(x, profile);
        }
        else
        {
            for (int t = 0; t < n; t++)
            {
                // A rank holds the embedding rows of its part of the vocabulary; the others add zeros.
                int row = tokens[t] - _vocabStart;
                if ((uint)row < (uint)_vocabCount)
                {
                    MatMul.DequantizeRow(_embedding!, row, x.Slice(t * dim, dim));
                }
                else
                {
                    x.Slice(t * dim, dim).Clear();
                }
            }

            profile?.Mark(ForwardProfile.Embedding);
            AllReduce(x, profile);
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

            profile?.Mark(ForwardProfile.AttentionNorm);
            MatMul.Multiply(xb, n, layer.Wq, q, layer.Wk, k, layer.Wv, v);
            profile?.Mark(ForwardProfile.Qkv);
            void* keys = cache.KeyData(l), values = cache.ValueData(l);
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
                int pos = _pos[t], block = _tables[_tableAt[t] + pos / bs];
                cache.NoteStored(kt);
                cache.NoteStored(vt);
                for (int h = 0; h < c.KvHeads; h++)
                {
                    long slot = cache.Offset(block, pos % bs, h);
                    ReadOnlySpan<float> kh = kt.Slice(h * hd, hd), vh = vt.Slice(h * hd, hd);
                    if (cache.Dtype == KvCacheDtype.F16)
                    {
                        // Rounded to nearest (ties to even), the same way wherever the token runs: what attention reads below.
                        TensorPrimitives.ConvertToHalf(kh, new Span<Half>((Half*)keys + slot, hd));
                        TensorPrimitives.ConvertToHalf(vh, new Span<Half>((Half*)values + slot, hd));
                    }
                    else
                    {
                        kh.CopyTo(new Span<float>((float*)keys + slot, hd));
                        vh.CopyTo(new Span<float>((float*)values + slot, hd));
                    }
                }
            }

            profile?.Mark(ForwardProfile.Rope);
            Attention(n, bs, attended, keys, values, cache.Dtype, finite: !cache.HoldsNonFinite);
            profile?.Mark(ForwardProfile.Attention);
            MatMul.Multiply(layer.Wo, att, xb, n);
            AllReduce(xb, profile);
            TensorPrimitives.Add(x, xb, x);
            profile?.Mark(ForwardProfile.OutputProjection);

            for (int t = 0; t < n; t++)
            {
                Elementwise.RmsNorm(x.Slice(t * dim, dim), layer.FfnNorm, c.RmsNormEps, xb.Slice(t * dim, dim));
            }

            profile?.Mark(ForwardProfile.FfnNorm);
            MatMul.Multiply(xb, n, layer.WGate, gate, layer.WUp, up);
            Elementwise.SwiGlu(gate, up);
            profile?.Mark(ForwardProfile.GateUp);
            MatMul.Multiply(layer.WDown, gate, xb, n);
            AllReduce(xb, profile);
            TensorPrimitives.Add(x, xb, x);
            profile?.Mark(ForwardProfile.Down);
        }

        if (_pipeline is { IsLast: false })
        {
            // The next stage goes on from here; this one starts its next micro-batch while the states travel.
            _sender!.Enqueue(x, _group!.Rank + 1);
            profile?.Mark(ForwardProfile.Communication);
            return;
        }

        if (logitRows == 0)
        {
            return;
        }

        for (int i = 0; i < logitRows; i++)
        {
            Elementwise.RmsNorm(x.Slice(_logitTokens[i] * dim, dim), _outputNorm, c.RmsNormEps, xb.Slice(i * dim, dim));
        }

        if (_pipeline is not null)
        {
            SendLogits(xb[..(logitRows * dim)], logitRows, profile);
        }
        else if (_shard is null)
        {
            MatMul.Multiply(_output!, xb[..(logitRows * dim)], logits, logitRows);
            profile?.Mark(ForwardProfile.Logits);
        }
        else
        {
            GatherLogits(xb[..(logitRows * dim)], logitRows, logits, profile);
        }
    }

    /// <summary>
    /// Causal attention of the chunk's queries over their sequences' cached keys and values, split over (token, head)
    /// pairs. <paramref name="attended"/> is the sum over tokens of the positions each attends to (the work estimate).
    /// </summary>
    private void Attention(int n, int blockSize, long attended, void* keys, void* values, KvCacheDtype dtype, bool finite)
    {
        if (dtype == KvCacheDtype.F16 && _shadowCount > 0)
        {
            fixed (float* sk = _shadowKeys, sv = _shadowValues)
            {
                ConvertShadow(_shadowCount, blockSize, (Half*)keys, (Half*)values, sk, sv);
                RunAttention(n, blockSize, attended, sk, sv, KvCacheDtype.F32, _shadowTables, finite: false);
            }

            return;
        }

        RunAttention(n, blockSize, attended, keys, values, dtype, _tables, finite);
    }

    /// <summary>
    /// Once per pass (every layer reads the same blocks): when the pass's queries read each F16 block several times over (a prefill chunk reads its sequence's blocks once per
    /// token and head; grouped heads share a block), gives each distinct block a slot in the float shadow and returns how
    /// many; 0 when converting while reading costs no more.
    /// </summary>
    private int ShadowSlots(int blockSize, long attended)
    {
        ReadOnlySpan<int> tables = _tables.AsSpan(0, _tableCount);
        int most = 0;
        foreach (int b in tables)
        {
            most = Math.Max(most, b + 1);
        }

        if (_shadowSlot.Length < most)
        {
            int old = _shadowSlot.Length;
            Array.Resize(ref _shadowSlot, Math.Max(most, 2 * old));
            _shadowSlot.AsSpan(old).Fill(-1);
        }

        if (_shadowTables.Length < tables.Length)
        {
            _shadowTables = new int[Math.Max(tables.Length, 2 * _shadowTables.Length)];
        }

        int slots = 0;
        for (int i = 0; i < tables.Length; i++)
        {
            ref int slot = ref _shadowSlot[tables[i]];
            if (slot < 0)
            {
                slot = slots++;
            }

            _shadowTables[i] = slot;
        }

        // Halves converted while reading: every (token, head) reads its positions; once: each distinct block's whole.
        long perRead = attended * Config.Heads, once = (long)slots * blockSize * Config.KvHeads;
        bool worth = perRead >= 4 * once;
        if (worth)
        {
            long floats = (long)slots * blockSize * _kvDim;
            if (_shadowKeys.Length < floats)
            {
                _shadowKeys = GC.AllocateUninitializedArray<float>((int)(2 * floats));
                _shadowValues = GC.AllocateUninitializedArray<float>((int)(2 * floats));
            }
        }

        foreach (int b in tables)
        {
            _shadowSlot[b] = -1;
        }

        return worth ? slots : 0;
    }

    /// <summary>Writes the keys and values of the pass's distinct blocks, in slot order, into the float shadow.</summary>
    private void ConvertShadow(int slots, int blockSize, Half* keys, Half* values, float* shadowKeys, float* shadowValues)
    {
        long blockElements = (long)blockSize * _kvDim;
        int done = 0;
        for (int i = 0; i < _tableCount && done < slots; i++)
        {
            int slot = _shadowTables[i];
            if (slot != done)
            {
                // Slots are numbered in first-seen order, so the next new one is the next slot.
                continue;
            }

            long from = _tables[i] * blockElements, to = slot * blockElements;
            HalfConvert.F16ToFloat((byte*)(keys + from), shadowKeys + to, (int)blockElements);
            HalfConvert.F16ToFloat((byte*)(values + from), shadowValues + to, (int)blockElements);
            done++;
        }
    }

    /// <summary>
    /// <paramref name="finite"/>: an F16 cache holds no infinity or NaN, so its halves may be read scaled
    /// (<see cref="F16ScaledKvElement"/>: the same bits, fewer instructions) where the head size is a multiple of 16.
    /// </summary>
    private void RunAttention(int n, int blockSize, long attended, void* keys, void* values, KvCacheDtype dtype, int[] blockTables, bool finite)
    {
        fixed (float* pq = _q, pa = _att)
        fixed (int* pos = _pos, tableAt = _tableAt, tables = blockTables)
        {
            var job = new AttentionJob
            {
                Q = pq,
                K = keys,
                V = values,
                Out = pa,
                Pos = pos,
                TableAt = tableAt,
                Tables = tables,
                Heads = Config.Heads,
                Group = Config.Heads / Config.KvHeads,
                HeadDim = Config.HeadDim,
                QDim = _qDim,
                KvDim = _kvDim,
                BlockSize = blockSize,
                Scale = 1f / MathF.Sqrt(Config.HeadDim),
            };
            int chunks = n * Config.Heads;
            delegate*<void*, int, void> head = dtype != KvCacheDtype.F16 ? &AttentionHead<float, F32KvElement>
                : finite && Config.HeadDim % 16 == 0 && Vector256.IsHardwareAccelerated ? &AttentionHead<Half, F16ScaledKvElement>
                : &AttentionHead<Half, F16KvElement>;
            WorkerPool? pool = attended * Config.Heads * Config.HeadDim >= 1 << 14 ? KernelThreads.Pool : null;
            if (pool is null)
            {
                for (int i = 0; i < chunks; i++)
                {
                    head(&job, i);
                }
            }
            else
            {
                pool.Run(head, &job, chunks);
            }
        }
    }

    [ThreadStatic]
    private static float[]? _scores;

    /// <summary>A query head times 2^112 (<see cref="F16ScaledKvElement"/>), per thread; pinned.</summary>
    [ThreadStatic]
    private static float[]? _scaledQuery;

    /// <summary>
    /// One (token, head): scores over positions 0..p in order, softmax, then the values summed in position order. The
    /// block table only decides where each position is read from, so any block size gives the same bits. Keys and values
    /// are elements of <typeparamref name="T"/> (the cache's dtype), read as exact floats.
    /// </summary>
    private static void AttentionHead<T, TKv>(void* context, int index)
        where T : unmanaged
        where TKv : IKvElement<T>
    {
        AttentionJob* job = (AttentionJob*)context;
        int t = index / job->Heads, h = index % job->Heads;
        int hd = job->HeadDim, kvDim = job->KvDim, bs = job->BlockSize, len = job->Pos[t] + 1;
        int* table = job->Tables + job->TableAt[t];
        long blockStride = (long)bs * kvDim, headStride = (long)bs * hd;
        float[] scores = _scores is { } s && s.Length >= len ? s : _scores = new float[Math.Max(len, 1024)];
        float* qh = job->Q + (long)t * job->QDim + h * hd;
        bool scaled = typeof(TKv) == typeof(F16ScaledKvElement);
        if (scaled)
        {
            // Keys and values are read as 2^-112 times their values: the query and the weights are scaled by 2^112 to
            // match, exactly; a query too large for that (or a NaN) takes the unscaled path, with the same result.
            var query = new ReadOnlySpan<float>(qh, hd);
            if (!(MathF.Abs(TensorPrimitives.MaxMagnitude(query)) < F16ScaledKvElement.QueryLimit))
            {
                AttentionHead<Half, F16KvElement>(context, index);
                return;
            }

            float[] buffer = _scaledQuery is { } b && b.Length >= hd ? b : _scaledQuery = GC.AllocateArray<float>(Math.Max(hd, 256), pinned: true);
            TensorPrimitives.Multiply(query, F16ScaledKvElement.Scale, buffer);
            qh = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
        }

        long kvOffset = h / job->Group * headStride;
        fixed (float* sc = scores)
        {
            // Each block's run of this head is contiguous but the blocks are anywhere: the next run (keys, then the first of
            // the values) is prefetched while this one is computed, so the reads do not wait for the hardware prefetcher
            // to find each new stream.
            int runBytes = bs * hd * sizeof(T), blocks = (len + bs - 1) / bs;
            for (int p = 0, b = 0; p < len; b++)
            {
                int run = Math.Min(bs, len - p);
                Prefetch(b + 1 < blocks ? (byte*)((T*)job->K + table[b + 1] * blockStride + kvOffset) : (byte*)((T*)job->V + table[0] * blockStride + kvOffset), runBytes);
                AttentionKernel.Scores<T, TKv>(qh, (T*)job->K + table[b] * blockStride + kvOffset, hd, run, hd, job->Scale, sc + p);
                p += run;
            }

            Elementwise.Softmax(new Span<float>(sc, len));
            if (scaled)
            {
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(sc, len), F16ScaledKvElement.Scale, new Span<float>(sc, len));
            }

            float* o = job->Out + (long)t * job->QDim + h * hd;
            new Span<float>(o, hd).Clear();
            for (int p = 0, b = 0; p < len; b++)
            {
                int run = Math.Min(bs, len - p);
                if (b + 1 < blocks)
                {
                    Prefetch((byte*)((T*)job->V + table[b + 1] * blockStride + kvOffset), runBytes);
                }

                AttentionKernel.Accumulate<T, TKv>(sc + p, (T*)job->V + table[b] * blockStride + kvOffset, hd, run, hd, o);
                p += run;
            }
        }
    }

    /// <summary>Asks for <paramref name="bytes"/> from <paramref name="p"/> in the caches (a hint: nothing where the CPU has no prefetch instruction).</summary>
    private static void Prefetch(byte* p, int bytes)
    {
        if (Sse.IsSupported)
        {
            for (int i = 0; i < bytes; i += 64)
            {
                Sse.Prefetch0(p + i);
            }
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

    public void Dispose()
    {
        StopFollowers();
        _sender?.Dispose();
        _weights.Dispose();
    }

    private struct AttentionJob
    {
        public float* Q;
        public void* K;
        public void* V;
        public float* Out;
        public int Heads;
        public int Group;
        public int HeadDim;
        public int QDim;
        public int* Pos;
        public int* TableAt;
        public int* Tables;
        public int KvDim;
        public int BlockSize;
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

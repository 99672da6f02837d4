using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Linear layers: y[b, r] = sum_c W[r, c] * x[b, c] for every row r of W and every batch row b.
/// x is [batch, W.Cols] and y is [batch, W.Rows], both row-major.
/// Supported weight types: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K. For the quantized types the
/// activations are first quantized to 8 bits per block of 32 (as llama.cpp does) and the dot
/// products are integer. Rows are split over <see cref="KernelThreads.Count"/> threads; in a batch,
/// each weight row is used for up to four activation rows at once.
/// Invariant (continuous batching): each output value has a fixed reduction order, independent of
/// batch composition, tiling and threads; a row multiplied in any batch, at any position, gives bit
/// for bit what it gives alone (see the folder's README).
/// </summary>
public static unsafe class MatMul
{
    /// <summary>Below this many multiply-adds a call runs on the calling thread alone.</summary>
    private const long ParallelThreshold = 1 << 16;

    /// <summary>Activation rows kept hot while a chunk of weight rows is swept over them.</summary>
    private const int BatchTile = 64;

    /// <summary>Weight bytes of one chunk when several activation tiles reuse them (about half of L2).</summary>
    private const long ChunkBytes = 256 * 1024;

    /// <summary>One weight row converted to floats (F16, BF16 batches), per thread.</summary>
    [ThreadStatic]
    private static float[]? _rowScratch;

    [ThreadStatic]
    private static byte[]? _activationScratch;

    /// <summary>Multiplies <paramref name="batch"/> activation rows by the weight matrix.</summary>
    public static void Multiply(Tensor w, ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        int rows = w.Rows, cols = w.Cols;
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        if (x.Length < (long)batch * cols || y.Length < (long)batch * rows)
        {
            throw new ArgumentException($"tensor {w.Name}: x needs {batch} x {cols} and y {batch} x {rows} values (got {x.Length} and {y.Length})");
        }

        fixed (float* px = x, py = y)
        {
            var job = new Job { W = w.Data, RowBytes = RowBytes(w), Rows = rows, Cols = cols, Batch = batch, X = px, Y = py };
            switch (w.Type)
            {
                case GgmlType.F32:
                    Run(&FloatChunk<F32Weights>, ref job);
                    break;
                case GgmlType.F16:
                    Run(&FloatChunk<F16Weights>, ref job);
                    break;
                case GgmlType.BF16:
                    Run(&FloatChunk<BF16Weights>, ref job);
                    break;
                case GgmlType.Q8_0:
                case GgmlType.Q4_0:
                    job = PackedJob(w, px, py, batch, default);
                    RunQuantized(&PackedChunk, ref job);
                    break;
                case GgmlType.Q4_K:
                    RunQuantized(&QuantChunk<Q4_KKernel>, ref job);
                    break;
                case GgmlType.Q6_K:
                    RunQuantized(&QuantChunk<Q6_KKernel>, ref job);
                    break;
                default:
                    throw Unsupported(w);
            }
        }
    }

    /// <summary>
    /// y0 = W0 x, y1 = W1 x and, with <paramref name="w2"/>, y2 = W2 x: the products of one input (Q, K, V; gate and up).
    /// For packed types (Q8_0, Q4_0) of one type and width the input is quantized once and the threads take the row
    /// groups of every matrix in one pass (one wait instead of two or three); the results are exactly those of
    /// <see cref="Multiply(Tensor, ReadOnlySpan{float}, Span{float}, int)"/> for each matrix.
    /// </summary>
    public static void Multiply(ReadOnlySpan<float> x, int batch, Tensor w0, Span<float> y0, Tensor w1, Span<float> y1, Tensor? w2 = null, Span<float> y2 = default)
    {
        bool shared = PackedQuant.Supports(w0.Type) && w1.Type == w0.Type && w1.Cols == w0.Cols
            && (w2 is null || (w2.Type == w0.Type && w2.Cols == w0.Cols));
        if (!shared)
        {
            Multiply(w0, x, y0, batch);
            Multiply(w1, x, y1, batch);
            if (w2 is not null)
            {
                Multiply(w2, x, y2, batch);
            }

            return;
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        int cols = w0.Cols;
        CheckLengths(w0, x, y0, batch);
        CheckLengths(w1, x, y1, batch);
        if (w2 is not null)
        {
            CheckLengths(w2, x, y2, batch);
        }

        fixed (byte* s = ActivationScratch(Q8Activations.ScratchBytes(cols, batch)))
        fixed (float* px = x, p0 = y0, p1 = y1, p2 = y2)
        {
            var a = Q8Activations.In(s, cols, batch);
            a.Quantize(px, batch);
            SharedJob shared3 = default;
            shared3.J0 = PackedJob(w0, px, p0, batch, a);
            shared3.J1 = PackedJob(w1, px, p1, batch, a);
            long work = ((long)w0.Rows + w1.Rows + (w2?.Rows ?? 0)) * cols * batch;
            WorkerPool? pool = work >= ParallelThreshold ? KernelThreads.Pool : null;
            int threads = pool is null ? 1 : pool.Workers + 1;
            shared3.End0 = PlanChunks(ref shared3.J0, threads);
            shared3.End1 = shared3.End0 + PlanChunks(ref shared3.J1, threads);
            shared3.End2 = shared3.End1;
            if (w2 is not null)
            {
                shared3.J2 = PackedJob(w2, px, p2, batch, a);
                shared3.End2 += PlanChunks(ref shared3.J2, threads);
            }

            if (pool is null)
            {
                for (int c = 0; c < shared3.End2; c++)
                {
                    SharedChunk(&shared3, c);
                }
            }
            else
            {
                pool.Run(&SharedChunk, &shared3, shared3.End2);
            }
        }
    }

    private static void CheckLengths(Tensor w, ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        if (x.Length < (long)batch * w.Cols || y.Length < (long)batch * w.Rows)
        {
            throw new ArgumentException($"tensor {w.Name}: x needs {batch} x {w.Cols} and y {batch} x {w.Rows} values (got {x.Length} and {y.Length})");
        }
    }

    private static Job PackedJob(Tensor w, float* x, float* y, int batch, Q8Activations a)
    {
        PackedQuant packed = PackedQuant.Of(w);
        return new Job
        {
            W = w.Data, RowBytes = RowBytes(w), Rows = w.Rows, Cols = w.Cols, Batch = batch, X = x, Y = y, A = a,
            Packed = packed.Data, PackedScales = packed.Scales, PackedBlockBytes = packed.BlockBytes, PackedQ8 = w.Type == GgmlType.Q8_0,
        };
    }

    /// <summary>Up to three packed products of one input in one pass: chunks [0, End0) are J0's, [End0, End1) J1's, the rest J2's.</summary>
    private struct SharedJob
    {
        public Job J0;
        public Job J1;
        public Job J2;
        public int End0;
        public int End1;
        public int End2;
    }

    private static void SharedChunk(void* context, int chunk)
    {
        SharedJob* s = (SharedJob*)context;
        if (chunk < s->End0)
        {
            PackedChunk(&s->J0, chunk);
        }
        else if (chunk < s->End1)
        {
            PackedChunk(&s->J1, chunk - s->End0);
        }
        else
        {
            PackedChunk(&s->J2, chunk - s->End1);
        }
    }

    /// <summary>Writes row <paramref name="row"/> of a tensor (an embedding lookup) as floats.</summary>
    public static void DequantizeRow(Tensor t, int row, Span<float> destination)
    {
        int cols = t.Cols;
        if ((uint)row >= (uint)t.Rows)
        {
            throw new ArgumentOutOfRangeException(nameof(row), $"tensor {t.Name}: row {row} of {t.Rows}");
        }

        if (destination.Length < cols)
        {
            throw new ArgumentException($"tensor {t.Name}: destination needs {cols} values, got {destination.Length}");
        }

        byte* src = t.Data + row * RowBytes(t);
        fixed (float* dst = destination)
        {
            DequantizeRow(t.Type, src, dst, cols, t);
        }
    }

    internal static void DequantizeRow(GgmlType type, byte* src, float* dst, int cols, Tensor t)
    {
        switch (type)
        {
            case GgmlType.F32: Buffer.MemoryCopy(src, dst, cols * 4L, cols * 4L); break;
            case GgmlType.F16: HalfConvert.F16ToFloat(src, dst, cols); break;
            case GgmlType.BF16: HalfConvert.BF16ToFloat(src, dst, cols); break;
            case GgmlType.Q8_0: Q8_0Kernel.DequantizeRow(src, dst, cols); break;
            case GgmlType.Q4_0: Q4_0Kernel.DequantizeRow(src, dst, cols); break;
            case GgmlType.Q4_K: Q4_KKernel.DequantizeRow(src, dst, cols); break;
            case GgmlType.Q6_K: Q6_KKernel.DequantizeRow(src, dst, cols); break;
            default: throw Unsupported(t);
        }
    }

    internal static long RowBytes(Tensor t)
    {
        int block = GgmlTypeInfo.BlockSize(t.Type);
        int? size = GgmlTypeInfo.TypeSize(t.Type);
        if (size is null || t.Cols % block != 0)
        {
            throw Unsupported(t);
        }

        return (long)t.Cols / block * size.Value;
    }

    private static NotSupportedException Unsupported(Tensor t) =>
        new($"tensor {t.Name}: type {t.Type} with {t.Cols} columns is not supported by the kernels (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");

    internal struct Job
    {
        public byte* W;
        public long RowBytes;
        public int Rows;
        public int Cols;
        public int Batch;
        public float* X;
        public float* Y;
        public Q8Activations A;
        public int ChunkRows;

        /// <summary>The <see cref="PackedQuant"/> copy of W (Q8_0, Q4_0), or null; chunks are then whole groups of rows.</summary>
        public byte* Packed;
        public ushort* PackedScales;
        public int PackedBlockBytes;
        public bool PackedQ8;
    }

    private static void RunQuantized(delegate*<void*, int, void> body, ref Job job)
    {
        fixed (byte* s = ActivationScratch(Q8Activations.ScratchBytes(job.Cols, job.Batch)))
        {
            job.A = Q8Activations.In(s, job.Cols, job.Batch);
            job.A.Quantize(job.X, job.Batch);
            Run(body, ref job);
        }
    }

    /// <summary>
    /// The calling thread's buffer for quantized activations, grown to the largest call and kept: a warm product
    /// allocates nothing, whatever the rest of the process does (a shared ArrayPool may drop its arrays on a full
    /// collection and then allocate on the next rent). A product never runs inside another on the same thread.
    /// </summary>
    private static byte[] ActivationScratch(int bytes)
    {
        byte[]? scratch = _activationScratch;
        if (scratch is null || scratch.Length < bytes)
        {
            _activationScratch = scratch = GC.AllocateUninitializedArray<byte>(bytes);
        }

        return scratch;
    }

    private static void Run(delegate*<void*, int, void> body, ref Job job)
    {
        WorkerPool? pool = (long)job.Rows * job.Cols * job.Batch >= ParallelThreshold ? KernelThreads.Pool : null;
        int chunks = PlanChunks(ref job, pool is null ? 1 : pool.Workers + 1);
        fixed (Job* p = &job)
        {
            if (pool is null || chunks == 1)
            {
                for (int c = 0; c < chunks; c++)
                {
                    body(p, c);
                }
            }
            else
            {
                pool.Run(body, p, chunks);
            }
        }
    }

    /// <summary>Sets the job's rows per chunk for <paramref name="threads"/> threads; returns the chunk count.</summary>
    private static int PlanChunks(ref Job job, int threads)
    {
        job.ChunkRows = threads == 1 ? job.Rows : Math.Max(1, (job.Rows + threads * 8 - 1) / (threads * 8));
        if (job.Batch > BatchTile)
        {
            // Several activation tiles sweep the same rows: keep a chunk's weights cache-resident between tiles.
            job.ChunkRows = (int)Math.Clamp(ChunkBytes / Math.Max(job.RowBytes, 1), 1, job.ChunkRows);
        }

        if (job.Packed != null)
        {
            job.ChunkRows = (job.ChunkRows + PackedQuant.GroupRows - 1) / PackedQuant.GroupRows * PackedQuant.GroupRows;
        }

        return (job.Rows + job.ChunkRows - 1) / job.ChunkRows;
    }

    private static void QuantChunk<TKernel>(void* context, int chunk)
        where TKernel : struct, IQuantKernel
    {
        ref Job job = ref *(Job*)context;
        int r0 = chunk * job.ChunkRows, r1 = Math.Min(job.Rows, r0 + job.ChunkRows), rows = job.Rows;
        for (int t0 = 0; t0 < job.Batch; t0 += BatchTile)
        {
            int t1 = Math.Min(job.Batch, t0 + BatchTile);
            for (int r = r0; r < r1; r++)
            {
                byte* row = job.W + r * job.RowBytes;
                int b = t0;
                for (; IntDot.IsSupported && b + 4 <= t1; b += 4)
                {
                    // Four activation rows per pass over the weight row (each value the bits Dot gives it alone).
                    TKernel.Dot4(row, job.A, b, job.Y + (long)b * rows + r, rows);
                }

                for (; b < t1; b++)
                {
                    job.Y[(long)b * rows + r] = TKernel.Dot(row, job.A, b);
                }
            }
        }
    }

    /// <summary>Rows of packed groups: each group swept over a tile of activation rows, four rows a step.</summary>
    private static void PackedChunk(void* context, int chunk)
    {
        ref Job job = ref *(Job*)context;
        int g0 = chunk * job.ChunkRows / PackedQuant.GroupRows;
        int g1 = (Math.Min(job.Rows, (chunk + 1) * job.ChunkRows) + PackedQuant.GroupRows - 1) / PackedQuant.GroupRows;
        int blocks = job.Cols / 32;
        long groupBytes = (long)blocks * job.PackedBlockBytes;
        for (int t0 = 0; t0 < job.Batch; t0 += BatchTile)
        {
            int count = Math.Min(job.Batch, t0 + BatchTile) - t0;
            for (int g = g0; g < g1; g++)
            {
                int valid = Math.Min(PackedQuant.GroupRows, job.Rows - g * PackedQuant.GroupRows);
                PackedQuantKernel.Group(job.Packed + g * groupBytes, job.PackedScales + (long)g * blocks * PackedQuant.GroupRows, job.PackedQ8, blocks, valid, job.A, t0, count,
                    job.Y + g * PackedQuant.GroupRows, job.Rows);
            }
        }
    }

    private static void FloatChunk<TWeights>(void* context, int chunk)
        where TWeights : struct, IFloatWeights
    {
        ref Job job = ref *(Job*)context;
        int r0 = chunk * job.ChunkRows, r1 = Math.Min(job.Rows, r0 + job.ChunkRows), cols = job.Cols;

        // F16/BF16 with several groups of four in a tile: convert each row once per tile. The floats are
        // the exact values the fused kernels convert to, so every dot gives the same bits either way.
        float[]? scratch = typeof(TWeights) != typeof(F32Weights) && job.Batch > 4 ? RowScratch(cols) : null;
        fixed (float* s = scratch)
        {
            for (int t0 = 0; t0 < job.Batch; t0 += BatchTile)
            {
                int t1 = Math.Min(job.Batch, t0 + BatchTile);
                for (int r = r0; r < r1; r++)
                {
                    byte* row = job.W + r * job.RowBytes;
                    if (s != null && t1 - t0 > 4)
                    {
                        TWeights.ToFloats(row, s, cols);
                        FloatRows<F32Weights>(ref job, (byte*)s, r, t0, t1);
                    }
                    else
                    {
                        FloatRows<TWeights>(ref job, row, r, t0, t1);
                    }
                }
            }
        }
    }

    /// <summary>y[b, r] for b in [t0, t1): four activation rows at a time, then one at a time.</summary>
    private static void FloatRows<TWeights>(ref Job job, byte* row, int r, int t0, int t1)
        where TWeights : struct, IFloatWeights
    {
        int rows = job.Rows, cols = job.Cols, b = t0;
        for (; b + 4 <= t1; b += 4)
        {
            FloatDot.Dot4<TWeights>(row, job.X + (long)b * cols, cols, cols, job.Y + (long)b * rows + r, rows);
        }

        for (; b < t1; b++)
        {
            job.Y[(long)b * rows + r] = FloatDot.Dot<TWeights>(row, job.X + (long)b * cols, cols);
        }
    }

    private static float[] RowScratch(int cols)
    {
        float[]? scratch = _rowScratch;
        if (scratch is null || scratch.Length < cols)
        {
            _rowScratch = scratch = GC.AllocateUninitializedArray<float>(cols, pinned: true);
        }

        return scratch;
    }
}

using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Kernels;

/// <summary>
/// The fast paths against the scalar references. Tolerances: against the block-exact integer
/// reference, float summation order only (1e-5 of the sum of |w x| + 1e-6); against the float
/// reference, also the activation quantization error, at most 0.6 of an activation step per value.
/// </summary>
public class MatMulTests
{
    public static TheoryData<GgmlType> QuantTypes => new() { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K };
    public static TheoryData<GgmlType> FloatTypes => new() { GgmlType.F32, GgmlType.F16, GgmlType.BF16 };

    private static IEnumerable<int> ColumnCounts(GgmlType type)
    {
        int block = GgmlTypeInfo.BlockSize(type);
        return block == 1 ? Enumerable.Range(1, 256) : block == 32 ? Enumerable.Range(1, 16).Select(i => i * 32) : [256, 512, 768, 1280];
    }

    private static float[] Dequantized(Tensor w)
    {
        var all = new float[(long)w.Rows * w.Cols];
        for (int r = 0; r < w.Rows; r++)
        {
            MatMul.DequantizeRow(w, r, all.AsSpan(r * w.Cols, w.Cols));
        }

        return all;
    }

    [Theory]
    [MemberData(nameof(QuantTypes))]
    public void Multiply_QuantizedEveryShape_MatchesIntegerReference(GgmlType type)
    {
        int seed = 0;
        foreach (int cols in ColumnCounts(type))
        {
            foreach (int rows in new[] { 1, 3, 7, 17 })
            {
                foreach (int batch in new[] { 1, 2, 3, 4, 5 })
                {
                    Tensor w = TestTensors.Random(type, rows, cols, ++seed);
                    float[] x = TestTensors.RandomFloats(batch * cols, seed);
                    var y = new float[batch * rows];
                    var expected = new float[batch * rows];
                    float[] wf = Dequantized(w);

                    MatMul.Multiply(w, x, y, batch);
                    MatMulReference.MultiplyQuantized(w, x, expected, batch);

                    for (int i = 0; i < y.Length; i++)
                    {
                        int b = i / rows, r = i % rows;
                        float magnitude = 0;
                        for (int c = 0; c < cols; c++)
                        {
                            magnitude += Math.Abs(wf[r * cols + c] * x[b * cols + c]);
                        }

                        Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-5f * magnitude + 1e-6f,
                            $"{type} rows {rows} cols {cols} batch {batch} [{i}]: {y[i]} vs {expected[i]}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(QuantTypes))]
    public void Multiply_Quantized_MatchesFloatReferenceWithinActivationQuantization(GgmlType type)
    {
        int cols = type is GgmlType.Q4_K or GgmlType.Q6_K ? 512 : 320, rows = 33, batch = 3;
        Tensor w = TestTensors.Random(type, rows, cols, 42);
        float[] x = TestTensors.RandomFloats(batch * cols, 43);
        var y = new float[batch * rows];
        var expected = new float[batch * rows];
        float[] wf = Dequantized(w);

        MatMul.Multiply(w, x, y, batch);
        MatMulReference.MultiplyFloat(w, x, expected, batch);

        for (int b = 0; b < batch; b++)
        {
            for (int r = 0; r < rows; r++)
            {
                double bound = 1e-4;
                for (int k = 0; k < cols / 32; k++)
                {
                    float amax = 0, sumW = 0;
                    for (int j = 0; j < 32; j++)
                    {
                        amax = Math.Max(amax, Math.Abs(x[b * cols + k * 32 + j]));
                        sumW += Math.Abs(wf[r * cols + k * 32 + j]);
                    }

                    bound += 0.6 * amax / 127 * sumW;
                }

                Assert.True(Math.Abs(y[b * rows + r] - expected[b * rows + r]) <= bound, $"{type} [{b},{r}]: {y[b * rows + r]} vs {expected[b * rows + r]} (bound {bound})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(FloatTypes))]
    public void Multiply_FloatEveryLength_MatchesReference(GgmlType type)
    {
        int seed = 100;
        foreach (int cols in ColumnCounts(type).Prepend(0).Where(c => c > 0))
        {
            foreach (int rows in new[] { 1, 5 })
            {
                int batch = 1 + cols % 5;
                Tensor w = TestTensors.Random(type, rows, cols, ++seed);
                float[] x = TestTensors.RandomFloats(batch * cols, seed);
                var y = new float[batch * rows];
                var expected = new float[batch * rows];

                MatMul.Multiply(w, x, y, batch);
                MatMulReference.MultiplyFloat(w, x, expected, batch);

                for (int i = 0; i < y.Length; i++)
                {
                    Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-5f * cols + 1e-6f, $"{type} cols {cols} [{i}]: {y[i]} vs {expected[i]}");
                }
            }
        }
    }

    [Fact]
    public void Multiply_LargeBatchedQ8_0_UsesThreadsAndMatchesReference()
    {
        Tensor w = TestTensors.Random(GgmlType.Q8_0, 131, 1024, 7);
        float[] x = TestTensors.RandomFloats(70 * 1024, 8);
        var y = new float[70 * 131];
        var expected = new float[70 * 131];

        MatMul.Multiply(w, x, y, 70);
        MatMulReference.MultiplyQuantized(w, x, expected, 70);

        for (int i = 0; i < y.Length; i++)
        {
            Assert.True(Math.Abs(y[i] - expected[i]) <= 1e-3f * (1 + Math.Abs(expected[i])), $"[{i}] {y[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void DequantizeRow_HandBuiltQ4_0Block_GivesExactValues()
    {
        var block = new byte[18];
        BitConverter.TryWriteBytes(block, (Half)0.5f);
        for (int j = 0; j < 16; j++)
        {
            block[2 + j] = (byte)(j | ((15 - j) << 4));
        }

        var row = new float[32];
        MatMul.DequantizeRow(TestTensors.Of(GgmlType.Q4_0, 1, 32, block), 0, row);

        for (int j = 0; j < 16; j++)
        {
            Assert.Equal((j - 8) * 0.5f, row[j]);
            Assert.Equal((15 - j - 8) * 0.5f, row[16 + j]);
        }
    }

    [Fact]
    public void DequantizeRow_HandBuiltQ8_0Rows_GivesExactValues()
    {
        var bytes = new byte[2 * 34];
        BitConverter.TryWriteBytes(bytes.AsSpan(34), (Half)0.25f);
        for (int j = 0; j < 32; j++)
        {
            bytes[34 + 2 + j] = (byte)(sbyte)(j - 16);
        }

        var row = new float[32];
        MatMul.DequantizeRow(TestTensors.Of(GgmlType.Q8_0, 2, 32, bytes), 1, row);

        Assert.Equal(Enumerable.Range(0, 32).Select(j => (j - 16) * 0.25f), row);
    }

    [Fact]
    public void DequantizeRow_HandBuiltQ4_KBlock_GivesExactValues()
    {
        var b = new byte[144];
        BitConverter.TryWriteBytes(b.AsSpan(0), (Half)0.5f);
        BitConverter.TryWriteBytes(b.AsSpan(2), (Half)0.25f);
        // Sub-blocks 0..3: scale in bits 0-5 of bytes 0..3, min in bits 0-5 of bytes 4..7.
        // Sub-blocks 4..7: scale low nibble of bytes 8..11 plus bits 6-7 of bytes 0..3 as bits 4-5; min likewise from the high nibble and bytes 4..7.
        int[] sc = [1, 2, 3, 63, 17, 33, 50, 7], mn = [0, 5, 10, 63, 20, 40, 1, 2];
        for (int j = 0; j < 4; j++)
        {
            b[4 + j] = (byte)(sc[j] | ((sc[j + 4] >> 4) << 6));
            b[8 + j] = (byte)(mn[j] | ((mn[j + 4] >> 4) << 6));
            b[12 + j] = (byte)((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
        }

        for (int i = 0; i < 128; i++)
        {
            b[16 + i] = (byte)((i % 16) | ((15 - i % 16) << 4));
        }

        var row = new float[256];
        MatMul.DequantizeRow(TestTensors.Of(GgmlType.Q4_K, 1, 256, b), 0, row);

        for (int t = 0; t < 8; t++)
        {
            for (int l = 0; l < 32; l++)
            {
                int q = t % 2 == 0 ? l % 16 : 15 - l % 16;
                Assert.Equal(0.5f * sc[t] * q - 0.25f * mn[t], row[32 * t + l]);
            }
        }
    }

    [Fact]
    public void DequantizeRow_HandBuiltQ6_KBlock_GivesExactValues()
    {
        var b = new byte[210];
        var q = new int[256];
        for (int i = 0; i < 256; i++)
        {
            q[i] = (i * 7 + 3) % 64;
        }

        for (int n = 0; n < 2; n++)
        {
            for (int l = 0; l < 32; l++)
            {
                int q1 = q[128 * n + l], q2 = q[128 * n + 32 + l], q3 = q[128 * n + 64 + l], q4 = q[128 * n + 96 + l];
                b[64 * n + l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                b[64 * n + 32 + l] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                b[128 + 32 * n + l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }

        for (int s = 0; s < 16; s++)
        {
            b[192 + s] = (byte)(sbyte)(s * 9 - 70);
        }

        BitConverter.TryWriteBytes(b.AsSpan(208), (Half)0.125f);
        var row = new float[256];

        MatMul.DequantizeRow(TestTensors.Of(GgmlType.Q6_K, 1, 256, b), 0, row);

        for (int i = 0; i < 256; i++)
        {
            Assert.Equal(0.125f * (i / 16 * 9 - 70) * (q[i] - 32), row[i]);
        }
    }

    [Fact]
    public void DequantizeRow_F16AndBF16EveryLength_AreExact()
    {
        var rng = new Random(5);
        for (int n = 1; n <= 256; n++)
        {
            var halves = new byte[n * 2];
            var bf = new byte[n * 2];
            var expectedHalf = new float[n];
            var expectedBf = new float[n];
            for (int i = 0; i < n; i++)
            {
                var h = (Half)(rng.NextSingle() * 200 - 100);
                BitConverter.TryWriteBytes(halves.AsSpan(2 * i), h);
                expectedHalf[i] = (float)h;
                ushort bits = (ushort)rng.Next(0, 65536);
                if ((bits & 0x7F80) == 0x7F80)
                {
                    bits &= 0xBFFF;
                }

                BitConverter.TryWriteBytes(bf.AsSpan(2 * i), bits);
                expectedBf[i] = BitConverter.Int32BitsToSingle(bits << 16);
            }

            var got = new float[n];
            MatMul.DequantizeRow(TestTensors.Of(GgmlType.F16, 1, n, halves), 0, got);
            Assert.Equal(expectedHalf, got);
            MatMul.DequantizeRow(TestTensors.Of(GgmlType.BF16, 1, n, bf), 0, got);
            Assert.Equal(expectedBf, got);
        }
    }

    [Fact]
    public void DequantizeRow_EveryHalfBitPattern_MatchesHalfToFloat()
    {
        var bytes = new byte[65536 * 2];
        for (int i = 0; i < 65536; i++)
        {
            BitConverter.TryWriteBytes(bytes.AsSpan(2 * i), (ushort)i);
        }

        var row = new float[65536];
        MatMul.DequantizeRow(TestTensors.Of(GgmlType.F16, 1, 65536, bytes), 0, row);

        for (int i = 0; i < 65536; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)i);
            Assert.True(float.IsNaN(expected) ? float.IsNaN(row[i]) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(row[i]), $"0x{i:X4}: {row[i]} vs {expected}");
        }
    }

    [Fact]
    public void Multiply_UnsupportedType_ThrowsNamingTensorAndType()
    {
        Tensor w = TestTensors.Of(GgmlType.Q5_K, 1, 256, new byte[176]);

        var e = Assert.Throws<NotSupportedException>(() => MatMul.Multiply(w, new float[256], new float[1], 1));
        Assert.Contains("test.Q5_K", e.Message);
        Assert.Contains("Q5_K", e.Message);
        Assert.Throws<NotSupportedException>(() => MatMul.DequantizeRow(w, 0, new float[256]));
    }

    [Fact]
    public void Multiply_ShortBuffers_Throw()
    {
        Tensor w = TestTensors.Random(GgmlType.F32, 4, 8, 1);

        Assert.Throws<ArgumentException>(() => MatMul.Multiply(w, new float[7], new float[4], 1));
        Assert.Throws<ArgumentException>(() => MatMul.Multiply(w, new float[16], new float[4], 2));
    }

    /// <summary>Weight types with column counts: odd lengths for the float types, odd block counts for the 32-blocks.</summary>
    public static TheoryData<GgmlType> PackedTypes => new() { GgmlType.Q8_0, GgmlType.Q4_0 };

    /// <summary>
    /// Q8_0 and Q4_0 run register-tiled on a repacked copy; every output must be exactly the scalar reference
    /// (one fused multiply-add per block, in block order), whatever the tile (four activation rows or one), the row
    /// group (padded last groups included), the thread count or the instruction set: test.sh runs this class again
    /// with AVX-VNNI, AVX-512, AVX2 and all SIMD switched off. Random weights include the byte -128, whose magnitude needs all 8 bits.
    /// </summary>
    [Theory]
    [MemberData(nameof(PackedTypes))]
    public void Multiply_PackedTypes_EqualIntegerReferenceBitForBit(GgmlType type)
    {
        int seed = 50;
        foreach (int rows in new[] { 1, 15, 16, 17, 33, 70 })
        {
            foreach (int cols in new[] { 32, 96, 800 })
            {
                foreach (int batch in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 66 })
                {
                    foreach (int threads in new[] { 1, 3 })
                    {
                        Tensor w = TestTensors.Random(type, rows, cols, ++seed);
                        float[] x = TestTensors.RandomFloats(batch * cols, seed);
                        var y = new float[batch * rows];
                        var expected = new float[batch * rows];
                        using (KernelThreads.OverrideOnCurrentThread(threads))
                        {
                            MatMul.Multiply(w, x, y, batch);
                        }

                        MatMulReference.MultiplyQuantized(w, x, expected, batch);
                        for (int i = 0; i < y.Length; i++)
                        {
                            if (BitConverter.SingleToInt32Bits(y[i]) != BitConverter.SingleToInt32Bits(expected[i]))
                            {
                                Assert.Fail($"{type} rows {rows} cols {cols} batch {batch} threads {threads} [{i / rows}, {i % rows}]: {y[i]:R} vs reference {expected[i]:R} ({KernelPath})");
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Scales that are not normal halves (zero, negative zero, subnormal) take the packed kernels' exact slow conversion;
    /// the result is still the reference's bits.
    /// </summary>
    [Theory]
    [MemberData(nameof(PackedTypes))]
    public void Multiply_PackedTypesWithZeroAndSubnormalScales_EqualIntegerReferenceBitForBit(GgmlType type)
    {
        const int rows = 40, cols = 96;
        int blockBytes = type == GgmlType.Q8_0 ? 34 : 18;
        Tensor w = TestTensors.Random(type, rows, cols, 77);
        ushort[] odd = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8200];
        unsafe
        {
            for (int r = 0; r < rows; r += 3)
            {
                *(ushort*)(w.Data + (long)r * (cols / 32) * blockBytes + (r % 3) * blockBytes) = odd[r % odd.Length];
            }
        }

        foreach (int batch in new[] { 1, 4, 5 })
        {
            float[] x = TestTensors.RandomFloats(batch * cols, batch);
            var y = new float[batch * rows];
            var expected = new float[batch * rows];
            MatMul.Multiply(w, x, y, batch);
            MatMulReference.MultiplyQuantized(w, x, expected, batch);
            Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), y.Select(BitConverter.SingleToInt32Bits));
        }
    }

    public static TheoryData<GgmlType> SharedInputTypes => new() { GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.F16 };

    /// <summary>
    /// The products of one input (Q/K/V, gate/up) in one pass give exactly what each matrix gives alone, for two and
    /// three matrices of different heights, at every batch size and thread count (packed types share the quantized
    /// input and the pool's pass; the others fall back to one product each).
    /// </summary>
    [Theory]
    [MemberData(nameof(SharedInputTypes))]
    public void Multiply_SharedInput_EqualsEachMatrixAloneBitForBit(GgmlType type)
    {
        const int cols = 256;
        int[] heights = [256, 64, 80];
        Tensor[] ws = [.. heights.Select((h, i) => TestTensors.Random(type, h, cols, 300 + i + (int)type))];
        foreach (int batch in new[] { 1, 3, 4, 16, 70 })
        {
            float[] x = TestTensors.RandomFloats(batch * cols, batch + (int)type);
            foreach (int threads in new[] { 1, 3 })
            {
                using var scope = KernelThreads.OverrideOnCurrentThread(threads);
                float[][] alone = [.. ws.Select(w => new float[batch * w.Rows])];
                for (int i = 0; i < ws.Length; i++)
                {
                    MatMul.Multiply(ws[i], x, alone[i], batch);
                }

                float[][] two = [.. ws.Take(2).Select(w => new float[batch * w.Rows])];
                MatMul.Multiply(x, batch, ws[0], two[0], ws[1], two[1]);
                float[][] three = [.. ws.Select(w => new float[batch * w.Rows])];
                MatMul.Multiply(x, batch, ws[0], three[0], ws[1], three[1], ws[2], three[2]);
                for (int i = 0; i < ws.Length; i++)
                {
                    Assert.Equal(alone[i], three[i]);
                    if (i < 2)
                    {
                        Assert.Equal(alone[i], two[i]);
                    }
                }
            }
        }
    }

    /// <summary>The instruction set the integer kernels run with in this process (test.sh switches the wider ones off).</summary>
    private static string KernelPath =>
        System.Runtime.Intrinsics.X86.AvxVnni.IsSupported ? (System.Runtime.Intrinsics.X86.Avx512BW.IsSupported ? "AVX-VNNI tiles, AVX-512BW rows" : "AVX-VNNI tiles, AVX2 rows")
        : System.Runtime.Intrinsics.X86.Avx512BW.IsSupported ? "AVX-512BW" : IntDot.IsSupported ? "AVX2"
        : System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated ? "Vector128" : "scalar";

    public static TheoryData<GgmlType, int> DeterminismShapes => new()
    {
        { GgmlType.F32, 37 }, { GgmlType.F32, 100 }, { GgmlType.F32, 773 },
        { GgmlType.F16, 37 }, { GgmlType.F16, 100 }, { GgmlType.F16, 773 },
        { GgmlType.BF16, 37 }, { GgmlType.BF16, 773 },
        { GgmlType.Q8_0, 96 }, { GgmlType.Q8_0, 800 },
        { GgmlType.Q4_0, 96 }, { GgmlType.Q4_0, 800 },
        { GgmlType.Q4_K, 256 }, { GgmlType.Q4_K, 768 },
        { GgmlType.Q6_K, 256 }, { GgmlType.Q6_K, 768 },
    };

    /// <summary>
    /// The continuous-batching invariant: an activation row multiplied in a batch of any size, at any
    /// position (in a group of four or in the tail, in any 64-row tile), with any thread count (so any
    /// row chunking), gives bit for bit what it gives alone.
    /// </summary>
    [Theory]
    [MemberData(nameof(DeterminismShapes))]
    public void Multiply_RowInAnyBatchAndThreadCount_EqualsRowAloneBitForBit(GgmlType type, int cols)
    {
        const int rows = 67, poolRows = 140;
        Tensor w = TestTensors.Random(type, rows, cols, 1000 + cols + (int)type);
        float[] pool = TestTensors.RandomFloats(poolRows * cols, cols + (int)type);
        var alone = new float[poolRows * rows];
        for (int i = 0; i < poolRows; i++)
        {
            MatMul.Multiply(w, pool.AsSpan(i * cols, cols), alone.AsSpan(i * rows, rows), 1);
        }

        int[] batches = [.. Enumerable.Range(1, 70), 127, 128, 129, 130];
        foreach (int threads in new[] { 0, 1, 3 })
        {
            KernelThreads.ThreadOverride scope = threads == 0 ? default : KernelThreads.OverrideOnCurrentThread(threads);
            try
            {
                foreach (int batch in batches)
                {
                    // Slide the window so that a pool row lands at many batch positions.
                    int start = batch * 7 % (poolRows - batch + 1);
                    var y = new float[batch * rows];
                    MatMul.Multiply(w, pool.AsSpan(start * cols, batch * cols), y, batch);
                    for (int b = 0; b < batch; b++)
                    {
                        for (int r = 0; r < rows; r++)
                        {
                            float got = y[b * rows + r], expected = alone[(start + b) * rows + r];
                            if (BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(expected))
                            {
                                Assert.Fail($"{type} cols {cols}, threads {(threads == 0 ? "default" : threads)}, batch {batch}, position {b}, row {r}: {got:R} in the batch vs {expected:R} alone");
                            }
                        }
                    }
                }
            }
            finally
            {
                if (threads != 0)
                {
                    scope.Dispose();
                }
            }
        }
    }

    [Fact]
    public void OverrideOnCurrentThread_Disposed_RestoresCountAndLeavesGlobalCountAlone()
    {
        int global = KernelThreads.Count;
        using (KernelThreads.OverrideOnCurrentThread(1))
        {
            Assert.Null(KernelThreads.Pool);
            using (KernelThreads.OverrideOnCurrentThread(3))
            {
                Assert.Equal(2, KernelThreads.Pool!.Workers);
            }

            Assert.Null(KernelThreads.Pool);
        }

        Assert.Equal(global, KernelThreads.Count);
        Assert.Equal(global <= 1, KernelThreads.Pool is null);
    }
}

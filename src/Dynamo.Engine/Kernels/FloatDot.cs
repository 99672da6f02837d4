using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Dot products of one float weight row (F32, F16 or BF16, converted while read) with activation rows.
/// The reduction order of every dot is fixed: per group of 16 columns, two FMAs into two 8-lane
/// accumulators (columns 0..7 and 8..15 of the group); then the sum of the two accumulators reduced
/// by <see cref="Vector256.Sum{T}"/>; then the tail columns added one by one (multiply, then add).
/// <see cref="Dot4"/> does exactly this for each of its four rows, so a row gives the same bits
/// whichever of the two computes it (the batch-composition invariant of the README).
/// With AVX-512 the two accumulators are the halves of one 16-lane vector (one load and one FMA per group of 16
/// instead of two): lane for lane the same operations, so the same bits.
/// </summary>
internal static unsafe class FloatDot
{
    /// <summary>The dot of <paramref name="n"/> weights at <paramref name="w"/> with the floats at <paramref name="x"/>.</summary>
    public static float Dot<TWeights>(byte* w, float* x, int n)
        where TWeights : struct, IFloatWeights
    {
        int i = 0;
        float sum = 0;
        if (Avx512F.IsSupported)
        {
            Vector512<float> acc = default;
            for (; i <= n - 16; i += 16)
            {
                acc = Avx512F.FusedMultiplyAdd(TWeights.Load16Wide(w, i), Vector512.Load(x + i), acc);
            }

            sum = Vector256.Sum(acc.GetLower() + acc.GetUpper());
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc0 = default, acc1 = default;
            for (; i <= n - 16; i += 16)
            {
                TWeights.Load16(w, i, out Vector256<float> lo, out Vector256<float> hi);
                acc0 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x + i + 8), acc1);
            }

            sum = Vector256.Sum(acc0 + acc1);
        }

        for (; i < n; i++)
        {
            sum += TWeights.At(w, i) * x[i];
        }

        return sum;
    }

    /// <summary>
    /// Dots of one weight row with four activation rows x, x + xStride, x + 2 xStride, x + 3 xStride,
    /// written to y[0], y[yStride], y[2 yStride], y[3 yStride]: the weights are read (and converted) once.
    /// </summary>
    public static void Dot4<TWeights>(byte* w, float* x, long xStride, int n, float* y, long yStride)
        where TWeights : struct, IFloatWeights
    {
        float* x0 = x, x1 = x + xStride, x2 = x + 2 * xStride, x3 = x + 3 * xStride;
        if (!Vector256.IsHardwareAccelerated)
        {
            y[0] = Dot<TWeights>(w, x0, n);
            y[yStride] = Dot<TWeights>(w, x1, n);
            y[2 * yStride] = Dot<TWeights>(w, x2, n);
            y[3 * yStride] = Dot<TWeights>(w, x3, n);
            return;
        }

        if (Avx512F.IsSupported)
        {
            Dot4Avx512<TWeights>(w, x0, x1, x2, x3, n, y, yStride);
            return;
        }

        int i = 0;
        Vector256<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        for (; i <= n - 16; i += 16)
        {
            TWeights.Load16(w, i, out Vector256<float> lo, out Vector256<float> hi);
            a0 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x0 + i), a0);
            b0 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x0 + i + 8), b0);
            a1 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x1 + i), a1);
            b1 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x1 + i + 8), b1);
            a2 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x2 + i), a2);
            b2 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x2 + i + 8), b2);
            a3 = Vector256.FusedMultiplyAdd(lo, Vector256.Load(x3 + i), a3);
            b3 = Vector256.FusedMultiplyAdd(hi, Vector256.Load(x3 + i + 8), b3);
        }

        Finish4<TWeights>(w, x0, x1, x2, x3, i, n, Vector256.Sum(a0 + b0), Vector256.Sum(a1 + b1), Vector256.Sum(a2 + b2), Vector256.Sum(a3 + b3), y, yStride);
    }

    private static void Dot4Avx512<TWeights>(byte* w, float* x0, float* x1, float* x2, float* x3, int n, float* y, long yStride)
        where TWeights : struct, IFloatWeights
    {
        int i = 0;
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (; i <= n - 16; i += 16)
        {
            Vector512<float> v = TWeights.Load16Wide(w, i);
            a0 = Avx512F.FusedMultiplyAdd(v, Vector512.Load(x0 + i), a0);
            a1 = Avx512F.FusedMultiplyAdd(v, Vector512.Load(x1 + i), a1);
            a2 = Avx512F.FusedMultiplyAdd(v, Vector512.Load(x2 + i), a2);
            a3 = Avx512F.FusedMultiplyAdd(v, Vector512.Load(x3 + i), a3);
        }

        Finish4<TWeights>(w, x0, x1, x2, x3, i, n, Vector256.Sum(a0.GetLower() + a0.GetUpper()), Vector256.Sum(a1.GetLower() + a1.GetUpper()),
            Vector256.Sum(a2.GetLower() + a2.GetUpper()), Vector256.Sum(a3.GetLower() + a3.GetUpper()), y, yStride);
    }

    /// <summary>Adds the tail columns i..n−1 one by one to the four vector sums and writes the four dots.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish4<TWeights>(byte* w, float* x0, float* x1, float* x2, float* x3, int i, int n, float s0, float s1, float s2, float s3, float* y, long yStride)
        where TWeights : struct, IFloatWeights
    {
        for (; i < n; i++)
        {
            float wi = TWeights.At(w, i);
            s0 += wi * x0[i];
            s1 += wi * x1[i];
            s2 += wi * x2[i];
            s3 += wi * x3[i];
        }

        y[0] = s0;
        y[yStride] = s1;
        y[2 * yStride] = s2;
        y[3 * yStride] = s3;
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Q4_K: super-blocks of 256 values (144 bytes): fp16 d, fp16 dmin, 12 bytes packing eight 6-bit
/// scales and eight 6-bit mins, then 128 bytes of nibbles. Bytes 32j..32j+31 hold sub-block 2j in
/// their low nibbles and sub-block 2j+1 in their high nibbles; value = d * scale * q - dmin * min.
/// </summary>
internal readonly unsafe struct Q4_KKernel : IQuantKernel
{
    public static int BlockElements => 256;
    public static int BlockBytes => 144;

    /// <summary>Scale and min of sub-block <paramref name="j"/> (0..7) from the 12 packed bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void ScaleMin(int j, byte* s, out int scale, out int min)
    {
        if (j < 4)
        {
            scale = s[j] & 63;
            min = s[j + 4] & 63;
        }
        else
        {
            scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
            min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }

    public static void DequantizeRow(byte* row, float* destination, int cols)
    {
        for (int sb = 0; sb < cols / 256; sb++)
        {
            byte* blk = row + sb * 144;
            float d = HalfConvert.F16(*(ushort*)blk), dmin = HalfConvert.F16(*(ushort*)(blk + 2));
            float* y = destination + sb * 256;
            for (int j = 0; j < 4; j++)
            {
                ScaleMin(2 * j, blk + 4, out int sc1, out int m1);
                ScaleMin(2 * j + 1, blk + 4, out int sc2, out int m2);
                byte* q = blk + 16 + 32 * j;
                for (int l = 0; l < 32; l++)
                {
                    y[64 * j + l] = d * sc1 * (q[l] & 0xF) - dmin * m1;
                    y[64 * j + 32 + l] = d * sc2 * (q[l] >> 4) - dmin * m2;
                }
            }
        }
    }

    public static float DotReference(byte* row, in Q8Activations a, int b)
    {
        sbyte* qa = a.RowQ(b);
        float* da = a.RowD(b);
        int* sa = a.RowSums(b);
        float sum = 0;
        for (int sb = 0; sb < a.Cols / 256; sb++)
        {
            byte* blk = row + sb * 144;
            float d = HalfConvert.F16(*(ushort*)blk), dmin = HalfConvert.F16(*(ushort*)(blk + 2));
            for (int t = 0; t < 8; t++)
            {
                ScaleMin(t, blk + 4, out int sc, out int m);
                byte* q = blk + 16 + 32 * (t / 2);
                int shift = (t & 1) * 4, k = sb * 8 + t, dot = 0;
                for (int l = 0; l < 32; l++)
                {
                    dot += ((q[l] >> shift) & 0xF) * qa[k * 32 + l];
                }

                sum += da[k] * (d * sc * dot - dmin * m * sa[k]);
            }
        }

        return sum;
    }

    public static float Dot(byte* row, in Q8Activations a, int b)
    {
        if (!IntDot.IsSupported)
        {
            return DotReference(row, a, b);
        }

        sbyte* qa = a.RowQ(b);
        float* da = a.RowD(b);
        int* sa = a.RowSums(b);
        Vector256<float> acc0 = default, acc1 = default;
        float mins = 0;
        for (int sb = 0; sb < a.Cols / 256; sb++)
        {
            byte* blk = row + sb * 144;
            float d = HalfConvert.F16(blk), dmin = HalfConvert.F16(blk + 2);
            for (int j = 0; j < 4; j++)
            {
                SubBlocks(blk, j, out Vector256<byte> lo, out Vector256<byte> hi, out int sc1, out int m1, out int sc2, out int m2);
                int k = sb * 8 + 2 * j;
                Pair(lo, hi, qa, da, sa, k, d, dmin, sc1, m1, sc2, m2, ref acc0, ref acc1, ref mins);
            }
        }

        return Vector256.Sum(acc0 + acc1) - mins;
    }

    public static void Dot4(byte* row, in Q8Activations a, int b, float* y, long stride)
    {
        sbyte* q0 = a.RowQ(b), q1 = a.RowQ(b + 1), q2 = a.RowQ(b + 2), q3 = a.RowQ(b + 3);
        float* d0 = a.RowD(b), d1 = a.RowD(b + 1), d2 = a.RowD(b + 2), d3 = a.RowD(b + 3);
        int* s0 = a.RowSums(b), s1 = a.RowSums(b + 1), s2 = a.RowSums(b + 2), s3 = a.RowSums(b + 3);
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        float n0 = 0, n1 = 0, n2 = 0, n3 = 0;
        for (int sb = 0; sb < a.Cols / 256; sb++)
        {
            byte* blk = row + sb * 144;
            float d = HalfConvert.F16(blk), dmin = HalfConvert.F16(blk + 2);
            for (int j = 0; j < 4; j++)
            {
                SubBlocks(blk, j, out Vector256<byte> lo, out Vector256<byte> hi, out int sc1, out int m1, out int sc2, out int m2);
                int k = sb * 8 + 2 * j;
                Pair(lo, hi, q0, d0, s0, k, d, dmin, sc1, m1, sc2, m2, ref a00, ref a01, ref n0);
                Pair(lo, hi, q1, d1, s1, k, d, dmin, sc1, m1, sc2, m2, ref a10, ref a11, ref n1);
                Pair(lo, hi, q2, d2, s2, k, d, dmin, sc1, m1, sc2, m2, ref a20, ref a21, ref n2);
                Pair(lo, hi, q3, d3, s3, k, d, dmin, sc1, m1, sc2, m2, ref a30, ref a31, ref n3);
            }
        }

        y[0] = Vector256.Sum(a00 + a01) - n0;
        y[stride] = Vector256.Sum(a10 + a11) - n1;
        y[2 * stride] = Vector256.Sum(a20 + a21) - n2;
        y[3 * stride] = Vector256.Sum(a30 + a31) - n3;
    }

    /// <summary>Sub-blocks 2j and 2j + 1 of a super-block: their nibbles (low, high) and their scales and minimums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlocks(byte* blk, int j, out Vector256<byte> lo, out Vector256<byte> hi, out int sc1, out int m1, out int sc2, out int m2)
    {
        ScaleMin(2 * j, blk + 4, out sc1, out m1);
        ScaleMin(2 * j + 1, blk + 4, out sc2, out m2);
        var mask = Vector256.Create((byte)0x0F);
        Vector256<byte> v = Vector256.Load(blk + 16 + 32 * j);
        lo = v & mask;
        hi = Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask;
    }

    /// <summary>Sub-blocks k and k + 1 (the low and high nibbles of 32 bytes) of one activation row: <see cref="Dot"/>'s step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Pair(Vector256<byte> lo, Vector256<byte> hi, sbyte* qa, float* da, int* sa, int k, float d, float dmin,
        int sc1, int m1, int sc2, int m2, ref Vector256<float> acc0, ref Vector256<float> acc1, ref float mins)
    {
        Vector256<int> p0 = IntDot.Unsigned(lo, Vector256.Load(qa + k * 32));
        Vector256<int> p1 = IntDot.Unsigned(hi, Vector256.Load(qa + k * 32 + 32));
        acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(d * sc1 * da[k]), acc0);
        acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p1), Vector256.Create(d * sc2 * da[k + 1]), acc1);
        mins += dmin * (m1 * da[k] * sa[k] + m2 * da[k + 1] * sa[k + 1]);
    }
}

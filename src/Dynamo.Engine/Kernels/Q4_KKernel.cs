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
        var mask = Vector256.Create((byte)0x0F);
        Vector256<float> acc0 = default, acc1 = default;
        float mins = 0;
        for (int sb = 0; sb < a.Cols / 256; sb++)
        {
            byte* blk = row + sb * 144;
            float d = HalfConvert.F16(blk), dmin = HalfConvert.F16(blk + 2);
            for (int j = 0; j < 4; j++)
            {
                ScaleMin(2 * j, blk + 4, out int sc1, out int m1);
                ScaleMin(2 * j + 1, blk + 4, out int sc2, out int m2);
                Vector256<byte> v = Vector256.Load(blk + 16 + 32 * j);
                int k = sb * 8 + 2 * j;
                Vector256<int> p0 = IntDot.Unsigned(v & mask, Vector256.Load(qa + k * 32));
                Vector256<int> p1 = IntDot.Unsigned(Vector256.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask, Vector256.Load(qa + k * 32 + 32));
                acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(d * sc1 * da[k]), acc0);
                acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p1), Vector256.Create(d * sc2 * da[k + 1]), acc1);
                mins += dmin * (m1 * da[k] * sa[k] + m2 * da[k + 1] * sa[k + 1]);
            }
        }

        return Vector256.Sum(acc0 + acc1) - mins;
    }
}

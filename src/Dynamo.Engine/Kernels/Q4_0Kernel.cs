using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Q4_0: blocks of 32 values, an fp16 scale d then 16 bytes; the low nibbles are values 0..15, the
/// high nibbles values 16..31; value = (nibble - 8) * d.
/// </summary>
internal readonly unsafe struct Q4_0Kernel : IQuantKernel
{
    public static int BlockElements => 32;
    public static int BlockBytes => 18;

    public static void DequantizeRow(byte* row, float* destination, int cols)
    {
        for (int k = 0; k < cols / 32; k++)
        {
            byte* blk = row + k * 18;
            float d = HalfConvert.F16(*(ushort*)blk);
            for (int j = 0; j < 16; j++)
            {
                destination[k * 32 + j] = ((blk[2 + j] & 0xF) - 8) * d;
                destination[k * 32 + 16 + j] = ((blk[2 + j] >> 4) - 8) * d;
            }
        }
    }

    public static float DotReference(byte* row, in Q8Activations a, int b)
    {
        sbyte* q = a.RowQ(b);
        float* d = a.RowD(b);
        float sum = 0;
        for (int k = 0; k < a.Blocks; k++)
        {
            byte* blk = row + k * 18;
            int dot = 0;
            for (int j = 0; j < 16; j++)
            {
                dot += ((blk[2 + j] & 0xF) - 8) * q[k * 32 + j] + ((blk[2 + j] >> 4) - 8) * q[k * 32 + 16 + j];
            }

            sum += HalfConvert.F16(*(ushort*)blk) * d[k] * dot;
        }

        return sum;
    }

    /// <summary>The 32 nibbles of a block as unsigned bytes (0..15), in element order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Unpack(byte* qs)
    {
        Vector128<byte> v = Vector128.Load(qs);
        var mask = Vector128.Create((byte)0x0F);
        return Vector256.Create(v & mask, Vector128.ShiftRightLogical(v.AsUInt16(), 4).AsByte() & mask);
    }

    /// <summary>
    /// Unsigned nibbles times signed activations, with the offset folded into the integer sum:
    /// sum((q - 8) a) = sum(q a) - 8 sum(a), sum(a) from <see cref="Q8Activations.Sums"/>, entered as
    /// the initial value of lane 0 of the dot-product accumulator.
    /// </summary>
    public static float Dot(byte* row, in Q8Activations a, int b)
    {
        if (!IntDot.IsSupported)
        {
            return DotReference(row, a, b);
        }

        // Two accumulators, even and odd blocks (an odd last block into the even one), summed at the
        // end: exactly the per-row sequence of Dot4.
        sbyte* q = a.RowQ(b);
        float* d = a.RowD(b);
        int* sums = a.RowSums(b);
        int n = a.Blocks, k = 0;
        Vector256<float> even = default, odd = default;
        for (; k + 1 < n; k += 2)
        {
            byte* b0 = row + k * 18, b1 = b0 + 18;
            Vector256<int> p0 = IntDot.Unsigned(Vector256.CreateScalar(sums[k] * -8), Unpack(b0 + 2), Vector256.Load(q + k * 32));
            Vector256<int> p1 = IntDot.Unsigned(Vector256.CreateScalar(sums[k + 1] * -8), Unpack(b1 + 2), Vector256.Load(q + k * 32 + 32));
            even = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(HalfConvert.F16(b0) * d[k]), even);
            odd = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p1), Vector256.Create(HalfConvert.F16(b1) * d[k + 1]), odd);
        }

        if (k < n)
        {
            byte* b0 = row + k * 18;
            Vector256<int> p0 = IntDot.Unsigned(Vector256.CreateScalar(sums[k] * -8), Unpack(b0 + 2), Vector256.Load(q + k * 32));
            even = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(HalfConvert.F16(b0) * d[k]), even);
        }

        return Vector256.Sum(even + odd);
    }

    public static bool HasDot4 => true;

    public static void Dot4(byte* row, in Q8Activations a, int b0, float* y, int stride)
    {
        if (!IntDot.IsSupported)
        {
            // The scalar path: the reference for every row, as Dot gives it for a row alone.
            for (int j = 0; j < 4; j++)
            {
                y[j * stride] = DotReference(row, a, b0 + j);
            }

            return;
        }

        sbyte* q0 = a.RowQ(b0), q1 = a.RowQ(b0 + 1), q2 = a.RowQ(b0 + 2), q3 = a.RowQ(b0 + 3);
        float* d0 = a.RowD(b0), d1 = a.RowD(b0 + 1), d2 = a.RowD(b0 + 2), d3 = a.RowD(b0 + 3);
        int* s0 = a.RowSums(b0), s1 = a.RowSums(b0 + 1), s2 = a.RowSums(b0 + 2), s3 = a.RowSums(b0 + 3);
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
        int n = a.Blocks, k = 0;
        for (; k + 1 < n; k += 2)
        {
            byte* blk = row + k * 18;
            Vector256<byte> u = Unpack(blk + 2), t = Unpack(blk + 20);
            float dw = HalfConvert.F16(blk), dv = HalfConvert.F16(blk + 18);
            int o = k * 32;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s0[k] * -8), u, Vector256.Load(q0 + o))), Vector256.Create(dw * d0[k]), e0);
            o0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s0[k + 1] * -8), t, Vector256.Load(q0 + o + 32))), Vector256.Create(dv * d0[k + 1]), o0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s1[k] * -8), u, Vector256.Load(q1 + o))), Vector256.Create(dw * d1[k]), e1);
            o1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s1[k + 1] * -8), t, Vector256.Load(q1 + o + 32))), Vector256.Create(dv * d1[k + 1]), o1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s2[k] * -8), u, Vector256.Load(q2 + o))), Vector256.Create(dw * d2[k]), e2);
            o2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s2[k + 1] * -8), t, Vector256.Load(q2 + o + 32))), Vector256.Create(dv * d2[k + 1]), o2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s3[k] * -8), u, Vector256.Load(q3 + o))), Vector256.Create(dw * d3[k]), e3);
            o3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s3[k + 1] * -8), t, Vector256.Load(q3 + o + 32))), Vector256.Create(dv * d3[k + 1]), o3);
        }

        if (k < n)
        {
            byte* blk = row + k * 18;
            Vector256<byte> u = Unpack(blk + 2);
            float dw = HalfConvert.F16(blk);
            int o = k * 32;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s0[k] * -8), u, Vector256.Load(q0 + o))), Vector256.Create(dw * d0[k]), e0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s1[k] * -8), u, Vector256.Load(q1 + o))), Vector256.Create(dw * d1[k]), e1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s2[k] * -8), u, Vector256.Load(q2 + o))), Vector256.Create(dw * d2[k]), e2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(Vector256.CreateScalar(s3[k] * -8), u, Vector256.Load(q3 + o))), Vector256.Create(dw * d3[k]), e3);
        }

        y[0] = Vector256.Sum(e0 + o0);
        y[stride] = Vector256.Sum(e1 + o1);
        y[2 * stride] = Vector256.Sum(e2 + o2);
        y[3 * stride] = Vector256.Sum(e3 + o3);
    }
}

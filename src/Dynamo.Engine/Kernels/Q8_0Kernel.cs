using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>Q8_0: blocks of 32 values, an fp16 scale d then 32 int8 q; value = d * q.</summary>
internal readonly unsafe struct Q8_0Kernel : IQuantKernel
{
    public static int BlockElements => 32;
    public static int BlockBytes => 34;

    public static void DequantizeRow(byte* row, float* destination, int cols)
    {
        for (int k = 0; k < cols / 32; k++)
        {
            byte* blk = row + k * 34;
            float d = HalfConvert.F16(*(ushort*)blk);
            for (int j = 0; j < 32; j++)
            {
                destination[k * 32 + j] = d * ((sbyte*)blk)[2 + j];
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
            byte* blk = row + k * 34;
            int dot = 0;
            for (int j = 0; j < 32; j++)
            {
                dot += ((sbyte*)blk)[2 + j] * q[k * 32 + j];
            }

            sum += HalfConvert.F16(*(ushort*)blk) * d[k] * dot;
        }

        return sum;
    }

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
        int n = a.Blocks, k = 0;
        Vector256<float> even = default, odd = default;
        for (; k + 1 < n; k += 2)
        {
            byte* b0 = row + k * 34, b1 = b0 + 34;
            Vector256<int> p0 = IntDot.Signed(Vector256.Load((sbyte*)b0 + 2), Vector256.Load(q + k * 32));
            Vector256<int> p1 = IntDot.Signed(Vector256.Load((sbyte*)b1 + 2), Vector256.Load(q + k * 32 + 32));
            even = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p0), Vector256.Create(HalfConvert.F16(b0) * d[k]), even);
            odd = Fma.MultiplyAdd(Avx.ConvertToVector256Single(p1), Vector256.Create(HalfConvert.F16(b1) * d[k + 1]), odd);
        }

        if (k < n)
        {
            byte* b0 = row + k * 34;
            Vector256<int> p0 = IntDot.Signed(Vector256.Load((sbyte*)b0 + 2), Vector256.Load(q + k * 32));
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

        if (AvxVnni.IsSupported && a.U is not null)
        {
            Dot4Vnni(row, a, b0, y, stride);
            return;
        }

        sbyte* q0 = a.RowQ(b0), q1 = a.RowQ(b0 + 1), q2 = a.RowQ(b0 + 2), q3 = a.RowQ(b0 + 3);
        float* d0 = a.RowD(b0), d1 = a.RowD(b0 + 1), d2 = a.RowD(b0 + 2), d3 = a.RowD(b0 + 3);
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
        int n = a.Blocks, k = 0;
        for (; k + 1 < n; k += 2)
        {
            byte* blk = row + k * 34;
            var w = Vector256.Load((sbyte*)blk + 2);
            var v = Vector256.Load((sbyte*)blk + 36);
            Vector256<byte> u = Avx2.Abs(w), t = Avx2.Abs(v);
            float dw = HalfConvert.F16(blk), dv = HalfConvert.F16(blk + 34);
            int o = k * 32;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q0 + o), w))), Vector256.Create(dw * d0[k]), e0);
            o0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(t, Avx2.Sign(Vector256.Load(q0 + o + 32), v))), Vector256.Create(dv * d0[k + 1]), o0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q1 + o), w))), Vector256.Create(dw * d1[k]), e1);
            o1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(t, Avx2.Sign(Vector256.Load(q1 + o + 32), v))), Vector256.Create(dv * d1[k + 1]), o1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q2 + o), w))), Vector256.Create(dw * d2[k]), e2);
            o2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(t, Avx2.Sign(Vector256.Load(q2 + o + 32), v))), Vector256.Create(dv * d2[k + 1]), o2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q3 + o), w))), Vector256.Create(dw * d3[k]), e3);
            o3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(t, Avx2.Sign(Vector256.Load(q3 + o + 32), v))), Vector256.Create(dv * d3[k + 1]), o3);
        }

        if (k < n)
        {
            byte* blk = row + k * 34;
            var w = Vector256.Load((sbyte*)blk + 2);
            Vector256<byte> u = Avx2.Abs(w);
            float dw = HalfConvert.F16(blk);
            int o = k * 32;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q0 + o), w))), Vector256.Create(dw * d0[k]), e0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q1 + o), w))), Vector256.Create(dw * d1[k]), e1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q2 + o), w))), Vector256.Create(dw * d2[k]), e2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(IntDot.Unsigned(u, Avx2.Sign(Vector256.Load(q3 + o), w))), Vector256.Create(dw * d3[k]), e3);
        }

        y[0] = Vector256.Sum(e0 + o0);
        y[stride] = Vector256.Sum(e1 + o1);
        y[2 * stride] = Vector256.Sum(e2 + o2);
        y[3 * stride] = Vector256.Sum(e3 + o3);
    }

    /// <summary>
    /// <see cref="Dot4"/> with one VNNI product per block and row: the activations as unsigned bytes
    /// (q + 128) times the signed weights, the accumulator starting at −128·Σw per 4 bytes (computed once
    /// per weight block for the four rows), so each int lane is exactly Σ w·q as in <see cref="Dot"/>; the
    /// block scale is the same float product d_w·d_x. Same bits as <see cref="Dot"/> for every row.
    /// </summary>
    private static void Dot4Vnni(byte* row, in Q8Activations a, int b0, float* y, int stride)
    {
        byte* u0 = a.RowU(b0), u1 = a.RowU(b0 + 1), u2 = a.RowU(b0 + 2), u3 = a.RowU(b0 + 3);
        float* d0 = a.RowD(b0), d1 = a.RowD(b0 + 1), d2 = a.RowD(b0 + 2), d3 = a.RowD(b0 + 3);
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, o0 = default, o1 = default, o2 = default, o3 = default;
        Vector256<byte> offset = Vector256.Create((byte)0x80);
        int n = a.Blocks, k = 0;
        for (; k + 1 < n; k += 2)
        {
            byte* blk = row + k * 34;
            Vector256<sbyte> w = Vector256.Load((sbyte*)blk + 2), v = Vector256.Load((sbyte*)blk + 36);
            Vector256<int> cw = Vector256<int>.Zero - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, offset, w);
            Vector256<int> cv = Vector256<int>.Zero - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, offset, v);
            Vector256<float> dw = Vector256.Create(HalfConvert.F16(blk)), dv = Vector256.Create(HalfConvert.F16(blk + 34));
            int o = k * 32;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u0 + o), w)), dw * Vector256.Create(d0[k]), e0);
            o0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cv, Vector256.Load(u0 + o + 32), v)), dv * Vector256.Create(d0[k + 1]), o0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u1 + o), w)), dw * Vector256.Create(d1[k]), e1);
            o1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cv, Vector256.Load(u1 + o + 32), v)), dv * Vector256.Create(d1[k + 1]), o1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u2 + o), w)), dw * Vector256.Create(d2[k]), e2);
            o2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cv, Vector256.Load(u2 + o + 32), v)), dv * Vector256.Create(d2[k + 1]), o2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u3 + o), w)), dw * Vector256.Create(d3[k]), e3);
            o3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cv, Vector256.Load(u3 + o + 32), v)), dv * Vector256.Create(d3[k + 1]), o3);
        }

        if (k < n)
        {
            byte* blk = row + k * 34;
            Vector256<sbyte> w = Vector256.Load((sbyte*)blk + 2);
            Vector256<int> cw = Vector256<int>.Zero - AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, offset, w);
            Vector256<float> dw = Vector256.Create(HalfConvert.F16(blk));
            int o = k * 32;
            e0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u0 + o), w)), dw * Vector256.Create(d0[k]), e0);
            e1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u1 + o), w)), dw * Vector256.Create(d1[k]), e1);
            e2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u2 + o), w)), dw * Vector256.Create(d2[k]), e2);
            e3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(AvxVnni.MultiplyWideningAndAdd(cw, Vector256.Load(u3 + o), w)), dw * Vector256.Create(d3[k]), e3);
        }

        y[0] = Vector256.Sum(e0 + o0);
        y[stride] = Vector256.Sum(e1 + o1);
        y[2 * stride] = Vector256.Sum(e2 + o2);
        y[3 * stride] = Vector256.Sum(e3 + o3);
    }
}

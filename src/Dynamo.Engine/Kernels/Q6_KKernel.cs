using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Q6_K: super-blocks of 256 values (210 bytes): 128 bytes of low nibbles (ql), 64 bytes of high
/// 2-bit pairs (qh), 16 int8 scales (one per 16 values), fp16 d; value = d * scale * (q - 32).
/// Each half of 128 values uses ql[64], qh[32] and 8 scales: value 32g + l (g = 0..3, l = 0..31)
/// takes ql[l + 32 (g &amp; 1)] (low nibble for g &lt; 2, high for g &gt;= 2), bits 2g..2g+1 of qh[l],
/// and scale 2g + l / 16.
/// </summary>
internal readonly unsafe struct Q6_KKernel : IQuantKernel
{
    public static int BlockElements => 256;
    public static int BlockBytes => 210;

    private static int Quant(byte* ql, byte* qh, int g, int l) =>
        (((ql[l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0xF) | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;

    public static void DequantizeRow(byte* row, float* destination, int cols)
    {
        for (int sb = 0; sb < cols / 256; sb++)
        {
            byte* blk = row + sb * 210;
            float d = HalfConvert.F16(*(ushort*)(blk + 208));
            for (int n = 0; n < 2; n++)
            {
                byte* ql = blk + 64 * n, qh = blk + 128 + 32 * n;
                sbyte* sc = (sbyte*)(blk + 192) + 8 * n;
                for (int g = 0; g < 4; g++)
                {
                    for (int l = 0; l < 32; l++)
                    {
                        destination[sb * 256 + 128 * n + 32 * g + l] = d * sc[2 * g + l / 16] * Quant(ql, qh, g, l);
                    }
                }
            }
        }
    }

    public static float DotReference(byte* row, in Q8Activations a, int b)
    {
        sbyte* qa = a.RowQ(b);
        float* da = a.RowD(b);
        float sum = 0;
        for (int sb = 0; sb < a.Cols / 256; sb++)
        {
            byte* blk = row + sb * 210;
            float d = HalfConvert.F16(*(ushort*)(blk + 208));
            for (int n = 0; n < 2; n++)
            {
                byte* ql = blk + 64 * n, qh = blk + 128 + 32 * n;
                sbyte* sc = (sbyte*)(blk + 192) + 8 * n;
                for (int g = 0; g < 4; g++)
                {
                    int k = sb * 8 + 4 * n + g, dot0 = 0, dot1 = 0;
                    for (int l = 0; l < 16; l++)
                    {
                        dot0 += Quant(ql, qh, g, l) * qa[k * 32 + l];
                        dot1 += Quant(ql, qh, g, l + 16) * qa[k * 32 + 16 + l];
                    }

                    sum += d * da[k] * (sc[2 * g] * dot0 + sc[2 * g + 1] * dot1);
                }
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
        Vector256<float> acc0 = default, acc1 = default;
        for (int sb = 0; sb < a.Cols / 256; sb++)
        {
            byte* blk = row + sb * 210;
            float d = HalfConvert.F16(blk + 208);
            for (int n = 0; n < 2; n++)
            {
                Unpack(blk, n, out Vector256<byte> g0, out Vector256<byte> g1, out Vector256<byte> g2, out Vector256<byte> g3);
                sbyte* sc = (sbyte*)(blk + 192) + 8 * n;
                Quad(g0, g1, g2, g3, qa, da, sb * 8 + 4 * n, sc, d, ref acc0, ref acc1);
            }
        }

        return Vector256.Sum(acc0 + acc1);
    }

    public static void Dot4(byte* row, in Q8Activations a, int b, float* y, long stride)
    {
        sbyte* q0 = a.RowQ(b), q1 = a.RowQ(b + 1), q2 = a.RowQ(b + 2), q3 = a.RowQ(b + 3);
        float* d0 = a.RowD(b), d1 = a.RowD(b + 1), d2 = a.RowD(b + 2), d3 = a.RowD(b + 3);
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default, a20 = default, a21 = default, a30 = default, a31 = default;
        for (int sb = 0; sb < a.Cols / 256; sb++)
        {
            byte* blk = row + sb * 210;
            float d = HalfConvert.F16(blk + 208);
            for (int n = 0; n < 2; n++)
            {
                Unpack(blk, n, out Vector256<byte> g0, out Vector256<byte> g1, out Vector256<byte> g2, out Vector256<byte> g3);
                sbyte* sc = (sbyte*)(blk + 192) + 8 * n;
                int k = sb * 8 + 4 * n;
                Quad(g0, g1, g2, g3, q0, d0, k, sc, d, ref a00, ref a01);
                Quad(g0, g1, g2, g3, q1, d1, k, sc, d, ref a10, ref a11);
                Quad(g0, g1, g2, g3, q2, d2, k, sc, d, ref a20, ref a21);
                Quad(g0, g1, g2, g3, q3, d3, k, sc, d, ref a30, ref a31);
            }
        }

        y[0] = Vector256.Sum(a00 + a01);
        y[stride] = Vector256.Sum(a10 + a11);
        y[2 * stride] = Vector256.Sum(a20 + a21);
        y[3 * stride] = Vector256.Sum(a30 + a31);
    }

    /// <summary>Half <paramref name="n"/> of a super-block as four groups of 32 signed values plus 32 (6-bit quants).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Unpack(byte* blk, int n, out Vector256<byte> g0, out Vector256<byte> g1, out Vector256<byte> g2, out Vector256<byte> g3)
    {
        var m4 = Vector256.Create((byte)0x0F);
        var m2 = Vector256.Create((byte)3);
        byte* ql = blk + 64 * n, qh = blk + 128 + 32 * n;
        Vector256<byte> l0 = Vector256.Load(ql), l1 = Vector256.Load(ql + 32), h = Vector256.Load(qh);
        Vector256<ushort> h16 = h.AsUInt16(), l016 = l0.AsUInt16(), l116 = l1.AsUInt16();
        g0 = (l0 & m4) | ((h & m2).AsUInt16() << 4).AsByte();
        g1 = (l1 & m4) | (((h16 >> 2).AsByte() & m2).AsUInt16() << 4).AsByte();
        g2 = ((l016 >> 4).AsByte() & m4) | (((h16 >> 4).AsByte() & m2).AsUInt16() << 4).AsByte();
        g3 = ((l116 >> 4).AsByte() & m4) | (((h16 >> 6).AsByte() & m2).AsUInt16() << 4).AsByte();
    }

    /// <summary>The four groups of a half super-block (sub-blocks k .. k + 3) against one activation row: <see cref="Dot"/>'s step.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(Vector256<byte> g0, Vector256<byte> g1, Vector256<byte> g2, Vector256<byte> g3, sbyte* qa, float* da, int k, sbyte* sc, float d,
        ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        var off = Vector256.Create((byte)32);
        acc0 = Group(g0 - off, qa + k * 32, sc, d * da[k], acc0);
        acc1 = Group(g1 - off, qa + k * 32 + 32, sc + 2, d * da[k + 1], acc1);
        acc0 = Group(g2 - off, qa + k * 32 + 64, sc + 4, d * da[k + 2], acc0);
        acc1 = Group(g3 - off, qa + k * 32 + 96, sc + 6, d * da[k + 3], acc1);
    }

    private static Vector256<float> Group(Vector256<byte> w, sbyte* qa, sbyte* sc, float scale, Vector256<float> acc)
    {
        Vector256<int> p = IntDot.Signed(w.AsSByte(), Vector256.Load(qa));
        Vector256<float> s = Vector256.Create(Vector128.Create(sc[0] * scale), Vector128.Create(sc[1] * scale));
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(p), s, acc);
    }
}

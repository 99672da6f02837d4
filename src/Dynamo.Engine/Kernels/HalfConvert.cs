using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>IEEE half and bfloat16 to float conversions: exact, with a table for per-block scales.</summary>
internal static unsafe class HalfConvert
{
    /// <summary>Every half value as a float, indexed by its bits (256 KiB, hot in L2 while decoding).</summary>
    private static readonly float[] Table = BuildTable();

    private static float[] BuildTable()
    {
        var t = GC.AllocateUninitializedArray<float>(65536, pinned: true);
        for (int i = 0; i < t.Length; i++)
        {
            t[i] = (float)BitConverter.UInt16BitsToHalf((ushort)i);
        }

        return t;
    }

    /// <summary>The float value of the half stored at <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float F16(byte* p) => Unsafe.Add(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(Table), *(ushort*)p);

    public static float F16(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    public static float BF16(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>
    /// Converts <paramref name="n"/> halves to floats, exactly (subnormals, infinities and NaNs
    /// included): the 15 magnitude bits shifted into a float's exponent and mantissa, times 2^112,
    /// re-biases normals and normalizes subnormals; exponent 31 (inf/NaN) is then forced to 255.
    /// </summary>
    public static void F16ToFloat(byte* src, float* dst, int n)
    {
        var s = (ushort*)src;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var magnitudeMask = Vector256.Create(0x7FFFu);
            var infNan = Vector256.Create(0x7C00u);
            var scale = Vector256.Create(BitConverter.Int32BitsToSingle(0x77800000)); // 2^112
            for (; i <= n - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(s + i));
                Convert(lo, magnitudeMask, infNan, scale).Store(dst + i);
                Convert(hi, magnitudeMask, infNan, scale).Store(dst + i + 8);
            }
        }

        for (; i < n; i++)
        {
            dst[i] = F16(s[i]);
        }
    }

    /// <summary>Dot product of <paramref name="n"/> halves with floats, converting on the fly (one pass over the weights).</summary>
    public static float DotF16(byte* w, float* x, int n)
    {
        var s = (ushort*)w;
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var magnitudeMask = Vector256.Create(0x7FFFu);
            var infNan = Vector256.Create(0x7C00u);
            var scale = Vector256.Create(BitConverter.Int32BitsToSingle(0x77800000));
            Vector256<float> acc0 = default, acc1 = default;
            for (; i <= n - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(s + i));
                acc0 = Vector256.FusedMultiplyAdd(Convert(lo, magnitudeMask, infNan, scale), Vector256.Load(x + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Convert(hi, magnitudeMask, infNan, scale), Vector256.Load(x + i + 8), acc1);
            }

            sum = Vector256.Sum(acc0 + acc1);
        }

        for (; i < n; i++)
        {
            sum += F16(s[i]) * x[i];
        }

        return sum;
    }

    /// <summary>Dot product of <paramref name="n"/> bfloat16 values with floats, converting on the fly.</summary>
    public static float DotBF16(byte* w, float* x, int n)
    {
        var s = (ushort*)w;
        int i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc0 = default, acc1 = default;
            for (; i <= n - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(s + i));
                acc0 = Vector256.FusedMultiplyAdd((lo << 16).AsSingle(), Vector256.Load(x + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd((hi << 16).AsSingle(), Vector256.Load(x + i + 8), acc1);
            }

            sum = Vector256.Sum(acc0 + acc1);
        }

        for (; i < n; i++)
        {
            sum += BF16(s[i]) * x[i];
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Convert(Vector256<uint> h, Vector256<uint> magnitudeMask, Vector256<uint> infNan, Vector256<float> scale)
    {
        Vector256<uint> m = h & magnitudeMask;
        Vector256<float> f = (m << 13).AsSingle() * scale;
        Vector256<uint> special = Vector256.GreaterThanOrEqual(m, infNan) & Vector256.Create(0x7F800000u);
        return (f.AsUInt32() | special | ((h ^ m) << 16)).AsSingle();
    }

    /// <summary>Converts <paramref name="n"/> bfloat16 values to floats (a 16-bit shift, exact).</summary>
    public static void BF16ToFloat(byte* src, float* dst, int n)
    {
        var s = (ushort*)src;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                (Vector256<uint> lo, Vector256<uint> hi) = Vector256.Widen(Vector256.Load(s + i));
                (lo << 16).AsSingle().Store(dst + i);
                (hi << 16).AsSingle().Store(dst + i + 8);
            }
        }

        for (; i < n; i++)
        {
            dst[i] = BF16(s[i]);
        }
    }
}

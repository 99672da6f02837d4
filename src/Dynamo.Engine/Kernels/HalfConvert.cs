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

    /// <summary>Converts <paramref name="n"/> halves to floats, exactly (subnormals, infinities and NaNs included).</summary>
    public static void F16ToFloat(byte* src, float* dst, int n)
    {
        var s = (ushort*)src;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - 16; i += 16)
            {
                F16KvElement.Load16((Half*)(s + i), out Vector256<float> lo, out Vector256<float> hi);
                lo.Store(dst + i);
                hi.Store(dst + i + 8);
            }
        }

        for (; i < n; i++)
        {
            dst[i] = F16(s[i]);
        }
    }

    /// <summary>
    /// Eight halves (zero-extended to 32 bits) to floats, exactly and without denormal arithmetic:
    /// normals, infinities and NaNs by moving the bits into place and re-biasing the exponent
    /// (+224, then times 2^-112); subnormals as 0.5 + m 2^-24 minus 0.5.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Convert(Vector256<uint> h)
    {
        Vector256<uint> w = h << 16;
        Vector256<uint> twoW = w + w;
        Vector256<float> normal = ((twoW >> 4) + Vector256.Create(0xE0u << 23)).AsSingle() * Vector256.Create(BitConverter.Int32BitsToSingle(0x07800000));
        Vector256<float> subnormal = ((twoW >> 17) | Vector256.Create(0x3F000000u)).AsSingle() - Vector256.Create(0.5f);
        Vector256<int> isSubnormal = Vector256.LessThan((h & Vector256.Create(0x7FFFu)).AsInt32(), Vector256.Create(0x400));
        return (Vector256.ConditionalSelect(isSubnormal.AsSingle(), subnormal, normal).AsUInt32() | (w & Vector256.Create(0x80000000u))).AsSingle();
    }

    /// <summary>Sixteen halves (zero-extended to 32 bits) to floats: <see cref="Convert(Vector256{uint})"/> on 512-bit vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Convert(Vector512<uint> h)
    {
        Vector512<uint> w = h << 16;
        Vector512<uint> twoW = w + w;
        Vector512<float> normal = ((twoW >> 4) + Vector512.Create(0xE0u << 23)).AsSingle() * Vector512.Create(BitConverter.Int32BitsToSingle(0x07800000));
        Vector512<float> subnormal = ((twoW >> 17) | Vector512.Create(0x3F000000u)).AsSingle() - Vector512.Create(0.5f);
        Vector512<int> isSubnormal = Vector512.LessThan((h & Vector512.Create(0x7FFFu)).AsInt32(), Vector512.Create(0x400));
        return (Vector512.ConditionalSelect(isSubnormal.AsSingle(), subnormal, normal).AsUInt32() | (w & Vector512.Create(0x80000000u))).AsSingle();
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

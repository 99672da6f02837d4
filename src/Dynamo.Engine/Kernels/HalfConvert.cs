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

    /// <summary>Converts <paramref name="n"/> halves to floats.</summary>
    public static void F16ToFloat(byte* src, float* dst, int n) =>
        System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(src, n), new Span<float>(dst, n));

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

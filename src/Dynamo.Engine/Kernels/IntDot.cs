using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>8-bit integer dot-product steps shared by the quantized kernels (x86: VNNI or maddubs).</summary>
internal static class IntDot
{
    /// <summary>Whether the integer SIMD paths can run (otherwise the scalar paths do).</summary>
    public static bool IsSupported => Avx2.IsSupported && Fma.IsSupported;

    /// <summary>Sums of 4 adjacent products of unsigned <paramref name="u"/> and signed <paramref name="s"/>: 8 int lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Unsigned(Vector256<byte> u, Vector256<sbyte> s)
    {
        if (AvxVnni.IsSupported)
        {
            return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, u, s);
        }

        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
    }

    /// <summary><paramref name="acc"/> plus sums of 4 adjacent products of unsigned <paramref name="u"/> and signed <paramref name="s"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Unsigned(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> s)
    {
        if (AvxVnni.IsSupported)
        {
            return AvxVnni.MultiplyWideningAndAdd(acc, u, s);
        }

        return acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(u, s), Vector256.Create((short)1));
    }

    /// <summary>Sums of 4 adjacent products of two signed vectors (|w| times a with w's sign; w != -128 or a's are bounded by 127).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Signed(Vector256<sbyte> w, Vector256<sbyte> a) =>
        Unsigned(Avx2.Abs(w), Avx2.Sign(a, w));
}

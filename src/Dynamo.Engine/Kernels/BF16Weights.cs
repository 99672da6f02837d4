using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>BF16 weights: the upper half of a float, widened by a 16-bit shift (exact).</summary>
internal readonly unsafe struct BF16Weights : IFloatWeights
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(byte* w, int i, out Vector256<float> lo, out Vector256<float> hi)
    {
        (Vector256<uint> l, Vector256<uint> u) = Vector256.Widen(Vector256.Load((ushort*)w + i));
        lo = (l << 16).AsSingle();
        hi = (u << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16Wide(byte* w, int i) =>
        (System.Runtime.Intrinsics.X86.Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)w + i)) << 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float At(byte* w, int i) => HalfConvert.BF16(((ushort*)w)[i]);

    public static void ToFloats(byte* w, float* destination, int n) => HalfConvert.BF16ToFloat(w, destination, n);
}

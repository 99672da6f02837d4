using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// F16 weights, converted exactly while they are read, as the F16 KV cache's halves are (<see cref="F16KvElement"/>:
/// groups of 16 without infinities or NaNs take the short conversion, any other group the exact general one).
/// </summary>
internal readonly unsafe struct F16Weights : IFloatWeights
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(byte* w, int i, out Vector256<float> lo, out Vector256<float> hi) =>
        F16KvElement.Load16((Half*)w + i, out lo, out hi);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16Wide(byte* w, int i) => F16KvElement.Load16Wide((Half*)w + i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float At(byte* w, int i) => HalfConvert.F16(((ushort*)w)[i]);

    public static void ToFloats(byte* w, float* destination, int n) => HalfConvert.F16ToFloat(w, destination, n);
}

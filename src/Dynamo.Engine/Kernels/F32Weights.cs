using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>F32 weights: read as they are.</summary>
internal readonly unsafe struct F32Weights : IFloatWeights
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(byte* w, int i, out Vector256<float> lo, out Vector256<float> hi)
    {
        lo = Vector256.Load((float*)w + i);
        hi = Vector256.Load((float*)w + i + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16Wide(byte* w, int i) => Vector512.Load((float*)w + i);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float At(byte* w, int i) => ((float*)w)[i];

    public static void ToFloats(byte* w, float* destination, int n) => Buffer.MemoryCopy(w, destination, n * 4L, n * 4L);
}

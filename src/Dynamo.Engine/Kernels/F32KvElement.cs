using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>An F32 KV cache: the floats as stored.</summary>
internal readonly unsafe struct F32KvElement : IKvElement<float>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Load16(float* p, out Vector256<float> lo, out Vector256<float> hi)
    {
        lo = Vector256.Load(p);
        hi = Vector256.Load(p + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load8(float* p) => Vector256.Load(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load1(float* p) => *p;
}

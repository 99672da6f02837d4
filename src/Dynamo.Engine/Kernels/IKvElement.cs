using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// One KV cache element type (<typeparamref name="T"/>: float for F32, Half for F16) read as exact floats by
/// <see cref="AttentionKernel"/>: sixteen at a time as two vectors of eight, eight, or one. Static abstract so that the
/// kernels, generic over the struct, are specialized per type; every type gives the floats its elements stand for, so
/// the kernels' reduction order (and the bits of their results) depends only on those floats.
/// </summary>
internal unsafe interface IKvElement<T>
    where T : unmanaged
{
    /// <summary>Elements 0..15 at <paramref name="p"/> as two vectors of eight.</summary>
    static abstract void Load16(T* p, out Vector256<float> lo, out Vector256<float> hi);

    /// <summary>Elements 0..7 at <paramref name="p"/>.</summary>
    static abstract Vector256<float> Load8(T* p);

    /// <summary>The element at <paramref name="p"/>.</summary>
    static abstract float Load1(T* p);
}

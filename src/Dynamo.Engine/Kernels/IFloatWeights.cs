using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// One float weight format (F32, F16, BF16) read as exact floats: sixteen at a time for the vector loop
/// of <see cref="FloatDot"/>, one at a time for its tail. Static abstract so that the dot products,
/// generic over the struct, are specialized per format.
/// </summary>
internal unsafe interface IFloatWeights
{
    /// <summary>Weights <paramref name="i"/>..<paramref name="i"/>+15 of the row at <paramref name="w"/> as two vectors of eight.</summary>
    static abstract void Load16(byte* w, int i, out Vector256<float> lo, out Vector256<float> hi);

    /// <summary>Weights <paramref name="i"/>..<paramref name="i"/>+15 as one vector of sixteen (AVX-512): the same floats.</summary>
    static abstract Vector512<float> Load16Wide(byte* w, int i);

    /// <summary>Weight <paramref name="i"/> of the row at <paramref name="w"/>.</summary>
    static abstract float At(byte* w, int i);

    /// <summary>Writes <paramref name="n"/> weights as floats: the values <see cref="Load16"/> and <see cref="At"/> give.</summary>
    static abstract void ToFloats(byte* w, float* destination, int n);
}

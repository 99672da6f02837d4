namespace Dynamo.Engine.Kernels;

/// <summary>
/// One quantized weight format: its block geometry, a scalar reference (dequantize, and an exact
/// integer dot with <see cref="Q8Activations"/>) and the SIMD dot products the driver calls.
/// Static abstract so that the driver, generic over the kernel struct, is specialized per format.
/// <see cref="Dot"/> computes one output value alone, so a row's result does not depend on the batch around it.
/// (Q8_0 and Q4_0 are not here: they run register-tiled on a repacked copy, <see cref="PackedQuantKernel"/>.)
/// </summary>
internal unsafe interface IQuantKernel
{
    static abstract int BlockElements { get; }
    static abstract int BlockBytes { get; }

    /// <summary>Scalar reference: writes <paramref name="cols"/> floats of one row.</summary>
    static abstract void DequantizeRow(byte* row, float* destination, int cols);

    /// <summary>Scalar reference: the block-exact dot of one weight row with activation row <paramref name="b"/>.</summary>
    static abstract float DotReference(byte* row, in Q8Activations a, int b);

    /// <summary>The dot of one weight row with activation row <paramref name="b"/> (SIMD where available).</summary>
    static abstract float Dot(byte* row, in Q8Activations a, int b);

    /// <summary>
    /// The weight row with activation rows b .. b + 3 at once, each the bits <see cref="Dot"/> gives it alone (every row
    /// runs the same operations in the same order): the row's blocks are loaded and unpacked once for the four.
    /// Only where <see cref="IntDot.IsSupported"/> (elsewhere <see cref="Dot"/> is the reference, one row at a time).
    /// </summary>
    static abstract void Dot4(byte* row, in Q8Activations a, int b, float* y, long stride);
}

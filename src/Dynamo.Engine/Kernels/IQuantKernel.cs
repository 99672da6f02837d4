namespace Dynamo.Engine.Kernels;

/// <summary>
/// One quantized weight format: its block geometry, a scalar reference (dequantize, and an exact
/// integer dot with <see cref="Q8Activations"/>) and the SIMD dot products the driver calls.
/// Static abstract so that the driver, generic over the kernel struct, is specialized per format.
/// <see cref="Dot"/> and each row of <see cref="Dot4"/> must do the same float operations in the same
/// order (the same accumulators, the same horizontal sum), so that a row's result does not depend on
/// whether it fell in a group of four or in the tail of a batch.
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

    /// <summary>Whether <see cref="Dot4"/> exists (it needs the integer SIMD path); otherwise the driver calls <see cref="Dot"/> per row.</summary>
    static abstract bool HasDot4 { get; }

    /// <summary>
    /// Dots of one weight row with activation rows b0..b0+3, written to y[0], y[stride], y[2 stride],
    /// y[3 stride]: bit for bit what <see cref="Dot"/> gives for each row (<see cref="DotReference"/>
    /// where the integer SIMD path is absent).
    /// </summary>
    static abstract void Dot4(byte* row, in Q8Activations a, int b0, float* y, int stride);
}

using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>The element-wise and per-row operations of a transformer layer, on spans.</summary>
public static class Elementwise
{
    /// <summary>destination = weight * x / sqrt(mean(x^2) + eps) (RMSNorm, as run.c and Hugging Face compute it).</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> destination)
    {
        float ss = TensorPrimitives.SumOfSquares(x);
        float scale = 1f / MathF.Sqrt(ss / x.Length + eps);
        TensorPrimitives.Multiply(x, scale, destination);
        TensorPrimitives.Multiply(destination, weight, destination);
    }

    /// <summary>
    /// gate = silu(gate) * up (the SwiGLU feed-forward activation); <paramref name="up"/> is not changed.
    /// Every element goes through the same 8-wide vector code (the tail in a zero-padded vector), so its
    /// result depends on its own gate and up values only, never on the span's length or its place in
    /// the span: n rows in one span give each row bit for bit what it gives alone. (TensorPrimitives'
    /// Sigmoid computes spans shorter than a vector with the scalar MathF.Exp, which differs from the
    /// vector exp in the last bit, so it would not hold there.)
    /// </summary>
    public static void SwiGlu(Span<float> gate, Span<float> up)
    {
        if (up.Length != gate.Length)
        {
            throw new ArgumentException($"gate has {gate.Length} values and up {up.Length}", nameof(up));
        }

        int n = gate.Length, i = 0;
        ref float g = ref MemoryMarshal.GetReference(gate);
        ref float u = ref MemoryMarshal.GetReference(up);
        for (; i <= n - 8; i += 8)
        {
            SwiGlu8(Vector256.LoadUnsafe(ref g, (nuint)i), Vector256.LoadUnsafe(ref u, (nuint)i)).StoreUnsafe(ref g, (nuint)i);
        }

        if (i < n)
        {
            Span<float> tail = stackalloc float[16];
            tail.Clear();
            gate[i..].CopyTo(tail);
            up[i..].CopyTo(tail[8..]);
            SwiGlu8(Vector256.Create<float>(tail), Vector256.Create<float>(tail[8..])).CopyTo(tail);
            tail[..(n - i)].CopyTo(gate[i..]);
        }
    }

    /// <summary>silu(g) * u = sigmoid(g) * (g * u) on eight lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SwiGlu8(Vector256<float> g, Vector256<float> u) =>
        Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(-g)) * (g * u);

    /// <summary>Softmax in place over <paramref name="x"/> (max subtracted first).</summary>
    public static void Softmax(Span<float> x)
    {
        if (x.IsEmpty)
        {
            return;
        }

        // Vectorized exponentials (every element through the same lane code for a given length, so a row's bits depend
        // on its length only, as for the sums); the sum in TensorPrimitives' order, fixed by the length.
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
    }
}

using System.Numerics.Tensors;

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

    /// <summary>Scalar reference of <see cref="RmsNorm"/>, in float64.</summary>
    public static void RmsNormReference(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> destination)
    {
        double ss = 0;
        foreach (float v in x)
        {
            ss += (double)v * v;
        }

        double scale = 1.0 / Math.Sqrt(ss / x.Length + eps);
        for (int i = 0; i < x.Length; i++)
        {
            destination[i] = (float)(weight[i] * (x[i] * scale));
        }
    }

    /// <summary>gate = silu(gate) * up (the SwiGLU feed-forward activation); <paramref name="up"/> is used as scratch.</summary>
    public static void SwiGlu(Span<float> gate, Span<float> up)
    {
        if (gate.IsEmpty)
        {
            return;
        }

        // silu(g) * u = sigmoid(g) * (g * u), in three vectorised passes.
        TensorPrimitives.Multiply(gate, up, up);
        TensorPrimitives.Sigmoid(gate, gate);
        TensorPrimitives.Multiply(gate, up, gate);
    }

    /// <summary>Softmax in place over <paramref name="x"/> (max subtracted first).</summary>
    public static void Softmax(Span<float> x)
    {
        if (x.IsEmpty)
        {
            return;
        }

        float max = TensorPrimitives.Max(x);
        float sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            float e = MathF.Exp(x[i] - max);
            x[i] = e;
            sum += e;
        }

        TensorPrimitives.Multiply(x, 1f / sum, x);
    }
}

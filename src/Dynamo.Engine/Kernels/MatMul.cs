using Dynamo.Engine.Models;
using Dynamo.Llm.Models;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// Linear layers: y[b, r] = sum_c W[r, c] * x[b, c] for every row r of W and every batch row b.
/// x is [batch, W.Cols] and y is [batch, W.Rows], both row-major.
/// </summary>
public static class MatMul
{
    /// <summary>Multiplies <paramref name="batch"/> activation rows by the weight matrix.</summary>
    public static unsafe void Multiply(Tensor w, ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        if (w.Type != GgmlType.F32)
        {
            throw new NotSupportedException($"tensor {w.Name}: type {w.Type} not supported yet");
        }

        int rows = w.Rows, cols = w.Cols;
        var data = new ReadOnlySpan<float>(w.Data, rows * cols);
        for (int b = 0; b < batch; b++)
        {
            ReadOnlySpan<float> xb = x.Slice(b * cols, cols);
            for (int r = 0; r < rows; r++)
            {
                y[b * rows + r] = System.Numerics.Tensors.TensorPrimitives.Dot(data.Slice(r * cols, cols), xb);
            }
        }
    }

    /// <summary>Writes row <paramref name="row"/> of a tensor (an embedding lookup) as floats.</summary>
    public static unsafe void DequantizeRow(Tensor t, int row, Span<float> destination)
    {
        if (t.Type != GgmlType.F32)
        {
            throw new NotSupportedException($"tensor {t.Name}: type {t.Type} not supported yet");
        }

        new ReadOnlySpan<float>(t.Data + (long)row * t.Cols * 4, t.Cols).CopyTo(destination);
    }
}

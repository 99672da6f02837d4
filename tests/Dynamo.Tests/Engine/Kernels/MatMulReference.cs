using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Engine.Kernels;

/// <summary>
/// Scalar references for <see cref="MatMul"/>, single-threaded (test code: the product never calls them):
/// <see cref="MultiplyFloat"/> dequantizes each row and dots it with the float activations;
/// <see cref="MultiplyQuantized"/> does the block-exact integer math of the fast path.
/// </summary>
internal static unsafe class MatMulReference
{
    public static void MultiplyFloat(Tensor w, ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        int rows = w.Rows, cols = w.Cols;
        long rowBytes = MatMul.RowBytes(w);
        var row = new float[cols];
        fixed (float* pr = row)
        {
            for (int r = 0; r < rows; r++)
            {
                MatMul.DequantizeRow(w.Type, w.Data + r * rowBytes, pr, cols, w);
                for (int b = 0; b < batch; b++)
                {
                    double sum = 0;
                    for (int c = 0; c < cols; c++)
                    {
                        sum += (double)row[c] * x[b * cols + c];
                    }

                    y[b * rows + r] = (float)sum;
                }
            }
        }
    }

    public static void MultiplyQuantized(Tensor w, ReadOnlySpan<float> x, Span<float> y, int batch)
    {
        int rows = w.Rows, cols = w.Cols;
        long rowBytes = MatMul.RowBytes(w);
        var scratch = new byte[Q8Activations.ScratchBytes(cols, batch)];
        fixed (byte* s = scratch)
        fixed (float* px = x)
        {
            var a = Q8Activations.In(s, cols, batch);
            a.QuantizeReference(px, batch);
            for (int r = 0; r < rows; r++)
            {
                byte* row = w.Data + r * rowBytes;
                for (int b = 0; b < batch; b++)
                {
                    y[b * rows + r] = w.Type switch
                    {
                        GgmlType.Q8_0 => Q8_0Kernel.DotReference(row, a, b),
                        GgmlType.Q4_0 => Q4_0Kernel.DotReference(row, a, b),
                        GgmlType.Q4_K => Q4_KKernel.DotReference(row, a, b),
                        GgmlType.Q6_K => Q6_KKernel.DotReference(row, a, b),
                        _ => throw new NotSupportedException($"{w.Type} has no quantized reference"),
                    };
                }
            }
        }
    }
}

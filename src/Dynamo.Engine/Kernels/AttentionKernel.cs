using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// The two inner loops of one attention head: scores q·k over the positions, and the weighted sum of the
/// values. Each result depends only on its own inputs and the head size, in a fixed order (so a token's
/// attention has the same bits in any batch, see README.md): a score is two 8-lane FMA accumulators over
/// groups of 16, summed, then the tail; the output is accumulated position by position in order, in
/// registers per 64-column slab.
/// </summary>
internal static unsafe class AttentionKernel
{
    /// <summary>scores[p] = (q · K[p]) * scale for p in 0..count-1, where K[p] starts at keys[p * stride].</summary>
    public static void Scores(float* q, float* keys, long stride, int count, int headDim, float scale, float* scores)
    {
        for (int p = 0; p < count; p++)
        {
            scores[p] = Dot(q, keys + p * stride, headDim) * scale;
        }
    }

    /// <summary>out += Σ_p weights[p] * V[p] for p in 0..count-1 in order, where V[p] starts at values[p * stride].</summary>
    public static void Accumulate(float* weights, float* values, long stride, int count, int headDim, float* output)
    {
        int c = 0;
        for (; c + 64 <= headDim; c += 64)
        {
            Slab64(weights, values + c, stride, count, output + c);
        }

        for (; c + 8 <= headDim; c += 8)
        {
            Vector256<float> o = Vector256.Load(output + c);
            for (int p = 0; p < count; p++)
            {
                o = Vector256.FusedMultiplyAdd(Vector256.Create(weights[p]), Vector256.Load(values + p * stride + c), o);
            }

            o.Store(output + c);
        }

        for (; c < headDim; c++)
        {
            float o = output[c];
            for (int p = 0; p < count; p++)
            {
                o = MathF.FusedMultiplyAdd(weights[p], values[p * stride + c], o);
            }

            output[c] = o;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int n)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        int i = 0;
        for (; i + 16 <= n; i += 16)
        {
            acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
            acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
        }

        float sum = Vector256.Sum(acc0 + acc1);
        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(a[i], b[i], sum);
        }

        return sum;
    }

    private static void Slab64(float* weights, float* values, long stride, int count, float* output)
    {
        Vector256<float> o0 = Vector256.Load(output), o1 = Vector256.Load(output + 8), o2 = Vector256.Load(output + 16), o3 = Vector256.Load(output + 24);
        Vector256<float> o4 = Vector256.Load(output + 32), o5 = Vector256.Load(output + 40), o6 = Vector256.Load(output + 48), o7 = Vector256.Load(output + 56);
        for (int p = 0; p < count; p++)
        {
            float* v = values + p * stride;
            Vector256<float> w = Vector256.Create(weights[p]);
            o0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v), o0);
            o1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 8), o1);
            o2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 16), o2);
            o3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 24), o3);
            o4 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 32), o4);
            o5 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 40), o5);
            o6 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 48), o6);
            o7 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 56), o7);
        }

        o0.Store(output);
        o1.Store(output + 8);
        o2.Store(output + 16);
        o3.Store(output + 24);
        o4.Store(output + 32);
        o5.Store(output + 40);
        o6.Store(output + 48);
        o7.Store(output + 56);
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// The two inner loops of one attention head: scores q·k over the positions, and the weighted sum of the
/// values. Each result depends only on its own inputs and the head size, in a fixed order (so a token's
/// attention has the same bits in any batch, see README.md): a score is one 8-lane FMA accumulator over
/// groups of 16, its lanes summed in a fixed tree (eight or four positions' trees at once with AVX), then the tail; the output is accumulated position by position in order, in
/// registers per 64-column slab. Keys and values are of a KV cache element type (<see cref="IKvElement{T}"/>:
/// F32, or F16 converted exactly as it is read); the arithmetic is the same float arithmetic for every type, so
/// an F16 cache gives the bits an F32 cache holding the same (rounded) values gives.
/// </summary>
internal static unsafe class AttentionKernel
{
    /// <summary>scores[p] = (q · K[p]) * scale for p in 0..count-1, where K[p] starts at keys[p * stride] (F32).</summary>
    public static void Scores(float* q, float* keys, long stride, int count, int headDim, float scale, float* scores) =>
        Scores<float, F32KvElement>(q, keys, stride, count, headDim, scale, scores);

    /// <summary>out += Σ_p weights[p] * V[p] for p in 0..count-1 in order, where V[p] starts at values[p * stride] (F32).</summary>
    public static void Accumulate(float* weights, float* values, long stride, int count, int headDim, float* output) =>
        Accumulate<float, F32KvElement>(weights, values, stride, count, headDim, output);

    /// <summary>scores[p] = (q · K[p]) * scale for p in 0..count-1, where K[p] starts at keys[p * stride] (elements of <typeparamref name="T"/>).</summary>
    public static void Scores<T, TKv>(float* q, T* keys, long stride, int count, int headDim, float scale, float* scores)
        where T : unmanaged
        where TKv : IKvElement<T>
    {
        int p = 0;
        if (Avx.IsSupported)
        {
            int body = headDim & ~15;
            if (body == headDim)
            {
                // Eight positions at a time (eight independent FMA chains keep both FMA pipes busy): two groups of four
                // reduced by horizontal adds as below, their halves added across in one vector, scaled and stored at once.
                Vector256<float> scaleV = Vector256.Create(scale);
                for (; p + 8 <= count; p += 8)
                {
                    T* k = keys + p * stride;
                    Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                    for (int i = 0; i < body; i += 16)
                    {
                        Vector256<float> qlo = Vector256.Load(q + i), qhi = Vector256.Load(q + i + 8);
                        T* ki = k + i;
                        a0 = Step<T, TKv>(qlo, qhi, ki, a0);
                        a1 = Step<T, TKv>(qlo, qhi, ki + stride, a1);
                        a2 = Step<T, TKv>(qlo, qhi, ki + 2 * stride, a2);
                        a3 = Step<T, TKv>(qlo, qhi, ki + 3 * stride, a3);
                        a4 = Step<T, TKv>(qlo, qhi, ki + 4 * stride, a4);
                        a5 = Step<T, TKv>(qlo, qhi, ki + 5 * stride, a5);
                        a6 = Step<T, TKv>(qlo, qhi, ki + 6 * stride, a6);
                        a7 = Step<T, TKv>(qlo, qhi, ki + 7 * stride, a7);
                    }

                    Vector256<float> first = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
                    Vector256<float> second = Avx.HorizontalAdd(Avx.HorizontalAdd(a4, a5), Avx.HorizontalAdd(a6, a7));
                    Vector256<float> sums = Avx.Permute2x128(first, second, 0x20) + Avx.Permute2x128(first, second, 0x31);
                    (sums * scaleV).Store(scores + p);
                }
            }

            // Four positions at a time: their four accumulators reduced together by two horizontal adds, each lane in the
            // order Reduce defines.
            for (; p + 4 <= count; p += 4)
            {
                T* k = keys + p * stride;
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int i = 0; i < body; i += 16)
                {
                    Vector256<float> qlo = Vector256.Load(q + i), qhi = Vector256.Load(q + i + 8);
                    a0 = Step<T, TKv>(qlo, qhi, k + i, a0);
                    a1 = Step<T, TKv>(qlo, qhi, k + stride + i, a1);
                    a2 = Step<T, TKv>(qlo, qhi, k + 2 * stride + i, a2);
                    a3 = Step<T, TKv>(qlo, qhi, k + 3 * stride + i, a3);
                }

                Vector256<float> h = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
                Vector128<float> sums = h.GetLower() + h.GetUpper();
                for (int j = 0; j < 4; j++)
                {
                    scores[p + j] = Tail<T, TKv>(q, k + j * stride, body, headDim, sums.GetElement(j)) * scale;
                }
            }
        }

        for (; p < count; p++)
        {
            scores[p] = Dot<T, TKv>(q, keys + p * stride, headDim) * scale;
        }
    }

    /// <summary>out += Σ_p weights[p] * V[p] for p in 0..count-1 in order, where V[p] starts at values[p * stride] (elements of <typeparamref name="T"/>).</summary>
    public static void Accumulate<T, TKv>(float* weights, T* values, long stride, int count, int headDim, float* output)
        where T : unmanaged
        where TKv : IKvElement<T>
    {
        int c = 0;
        for (; c + 64 <= headDim; c += 64)
        {
            Slab64<T, TKv>(weights, values + c, stride, count, output + c);
        }

        for (; c + 8 <= headDim; c += 8)
        {
            Vector256<float> o = Vector256.Load(output + c);
            for (int p = 0; p < count; p++)
            {
                o = Vector256.FusedMultiplyAdd(Vector256.Create(weights[p]), TKv.Load8(values + p * stride + c), o);
            }

            o.Store(output + c);
        }

        for (; c < headDim; c++)
        {
            float o = output[c];
            for (int p = 0; p < count; p++)
            {
                o = MathF.FusedMultiplyAdd(weights[p], TKv.Load1(values + p * stride + c), o);
            }

            output[c] = o;
        }
    }

    /// <summary>
    /// q · b over n elements: one 8-lane accumulator over groups of 16 (the first eight of a group, then the second),
    /// reduced as <see cref="Reduce"/> says, then the remaining elements one by one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<T, TKv>(float* a, T* b, int n)
        where T : unmanaged
        where TKv : IKvElement<T>
    {
        Vector256<float> acc = Vector256<float>.Zero;
        int body = n & ~15;
        for (int i = 0; i < body; i += 16)
        {
            acc = Step<T, TKv>(Vector256.Load(a + i), Vector256.Load(a + i + 8), b + i, acc);
        }

        return Tail<T, TKv>(a, b, body, n, Reduce(acc));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Step<T, TKv>(Vector256<float> qlo, Vector256<float> qhi, T* k, Vector256<float> acc)
        where T : unmanaged
        where TKv : IKvElement<T>
    {
        TKv.Load16(k, out Vector256<float> lo, out Vector256<float> hi);
        return Vector256.FusedMultiplyAdd(qhi, hi, Vector256.FusedMultiplyAdd(qlo, lo, acc));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail<T, TKv>(float* a, T* b, int from, int n, float sum)
        where T : unmanaged
        where TKv : IKvElement<T>
    {
        for (int i = from; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(a[i], TKv.Load1(b + i), sum);
        }

        return sum;
    }

    /// <summary>
    /// The sum of a score accumulator's lanes, in the order two horizontal adds and a fold of the halves give (the order
    /// of the four-position path): ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Reduce(Vector256<float> x)
    {
        if (Avx.IsSupported)
        {
            Vector256<float> h = Avx.HorizontalAdd(x, x);
            h = Avx.HorizontalAdd(h, h);
            return (h.GetLower() + h.GetUpper()).ToScalar();
        }

        return ((x[0] + x[1]) + (x[2] + x[3])) + ((x[4] + x[5]) + (x[6] + x[7]));
    }

    private static void Slab64<T, TKv>(float* weights, T* values, long stride, int count, float* output)
        where T : unmanaged
        where TKv : IKvElement<T>
    {
        Vector256<float> o0 = Vector256.Load(output), o1 = Vector256.Load(output + 8), o2 = Vector256.Load(output + 16), o3 = Vector256.Load(output + 24);
        Vector256<float> o4 = Vector256.Load(output + 32), o5 = Vector256.Load(output + 40), o6 = Vector256.Load(output + 48), o7 = Vector256.Load(output + 56);
        for (int p = 0; p < count; p++)
        {
            T* v = values + p * stride;
            Vector256<float> w = Vector256.Create(weights[p]);
            TKv.Load16(v, out Vector256<float> v0, out Vector256<float> v1);
            TKv.Load16(v + 16, out Vector256<float> v2, out Vector256<float> v3);
            TKv.Load16(v + 32, out Vector256<float> v4, out Vector256<float> v5);
            TKv.Load16(v + 48, out Vector256<float> v6, out Vector256<float> v7);
            o0 = Vector256.FusedMultiplyAdd(w, v0, o0);
            o1 = Vector256.FusedMultiplyAdd(w, v1, o1);
            o2 = Vector256.FusedMultiplyAdd(w, v2, o2);
            o3 = Vector256.FusedMultiplyAdd(w, v3, o3);
            o4 = Vector256.FusedMultiplyAdd(w, v4, o4);
            o5 = Vector256.FusedMultiplyAdd(w, v5, o5);
            o6 = Vector256.FusedMultiplyAdd(w, v6, o6);
            o7 = Vector256.FusedMultiplyAdd(w, v7, o7);
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

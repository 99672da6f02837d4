using Dynamo.Engine.Kernels;

namespace Dynamo.Tests.Engine.Kernels;

/// <summary><see cref="AttentionKernel"/> against float64 formulas, and its independence from how positions are split into runs.</summary>
public sealed unsafe class AttentionKernelTests
{
    private static float[] Random(int length, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, length).Select(_ => (float)(2 * random.NextDouble() - 1))];
    }

    [Theory]
    [InlineData(64, 1)]
    [InlineData(64, 37)]
    [InlineData(128, 20)]
    [InlineData(80, 9)]
    [InlineData(13, 5)]
    [InlineData(200, 3)]
    public void ScoresAndAccumulate_MatchFloat64(int headDim, int count)
    {
        int stride = headDim + 7; // rows of a wider KV row (several heads)
        float[] q = Random(headDim, 1), keys = Random(count * stride, 2), values = Random(count * stride, 3), weights = Random(count, 4);
        float[] scores = new float[count], output = new float[headDim];
        fixed (float* pq = q, pk = keys, pv = values, pw = weights, ps = scores, po = output)
        {
            AttentionKernel.Scores(pq, pk, stride, count, headDim, 0.125f, ps);
            AttentionKernel.Accumulate(pw, pv, stride, count, headDim, po);
        }

        for (int p = 0; p < count; p++)
        {
            double expected = 0, magnitude = 0;
            for (int i = 0; i < headDim; i++)
            {
                expected += (double)q[i] * keys[p * stride + i];
                magnitude += Math.Abs((double)q[i] * keys[p * stride + i]);
            }

            Assert.True(Math.Abs(expected * 0.125 - scores[p]) <= 1e-6 * magnitude + 1e-7, $"score {p}: {scores[p]} vs {expected * 0.125}");
        }

        for (int c = 0; c < headDim; c++)
        {
            double expected = 0, magnitude = 0;
            for (int p = 0; p < count; p++)
            {
                expected += (double)weights[p] * values[p * stride + c];
                magnitude += Math.Abs((double)weights[p] * values[p * stride + c]);
            }

            Assert.True(Math.Abs(expected - output[c]) <= 1e-6 * magnitude + 1e-7, $"column {c}: {output[c]} vs {expected}");
        }
    }

    [Theory]
    [InlineData(64)]
    [InlineData(72)]
    [InlineData(13)]
    public void Accumulate_SplitIntoAnyRuns_SameBits(int headDim)
    {
        const int count = 50;
        float[] values = Random(count * headDim, 5), weights = Random(count, 6);
        float[] whole = new float[headDim], split = new float[headDim];
        fixed (float* pv = values, pw = weights, a = whole, b = split)
        {
            AttentionKernel.Accumulate(pw, pv, headDim, count, headDim, a);
            foreach ((int start, int length) in new[] { (0, 16), (16, 1), (17, 15), (32, 18) })
            {
                AttentionKernel.Accumulate(pw + start, pv + start * headDim, headDim, length, headDim, b);
            }
        }

        Assert.Equal(whole, split);
    }
}

using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models.Synth;

namespace Dynamo.Tests.Engine.Models.Synth;

public sealed class SynthRandomTests
{
    [Theory]
    [InlineData(110UL, 0.0130990352f, 0.016903216f, 0.0154380705f, 0.0232928321f)]
    [InlineData(1100UL, -0.0108936597f, 0.00264319335f, 0.0182308443f, 0.0184104927f)]
    public void Fill_ReferenceSeeds_GivesTheReferenceFirstFloats(ulong seed, float a, float b, float c, float d)
    {
        float[] values = new float[4];

        SynthRandom.Fill(seed, 0, values);

        Assert.Equal([a, b, c, d], values);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    public void Fill_OddStartAndLargeParallelSpan_MatchesValueByValueOnAnyThreadCount(int threads)
    {
        float[] big = new float[300_001];
        using (KernelThreads.OverrideOnCurrentThread(threads))
        {
            SynthRandom.Fill(7, 3, big);
        }

        for (int i = 0; i < big.Length; i++)
        {
            Assert.Equal((float)(0.02 * SynthRandom.Normal(7, 3 + i)), big[i]);
        }

        float[] slice = new float[5];
        SynthRandom.Fill(7, 3 + 1001, slice);
        Assert.Equal(big.AsSpan(1001, 5).ToArray(), slice);
    }

    [Fact]
    public void Normal_ManyDraws_HasStandardMoments()
    {
        double sum = 0, sumSq = 0;
        const int N = 200_000;
        for (int i = 0; i < N; i++)
        {
            double x = SynthRandom.Normal(1, i);
            sum += x;
            sumSq += x * x;
        }

        Assert.InRange(sum / N, -0.01, 0.01);
        Assert.InRange(sumSq / N, 0.98, 1.02);
    }
}

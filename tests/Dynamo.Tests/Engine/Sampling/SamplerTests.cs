using Dynamo.Engine.Sampling;
using Dynamo.Llm.Engines;

namespace Dynamo.Tests.Engine.Sampling;

public sealed class SamplerTests
{
    private static readonly float[] Spread = [0.3f, 1.9f, -0.7f, 1.2f, 0.8f, -1.5f, 2.1f, 0.1f, 1.0f, -0.2f, 1.6f, 0.5f];

    private static int[] Draws(SamplingParams p, float[] logits, int count, IReadOnlyList<int>? prompt = null)
    {
        var sampler = new Sampler(p, prompt ?? []);
        var result = new int[count];
        for (int i = 0; i < count; i++)
        {
            result[i] = sampler.Sample(logits.ToArray(), null, out _);
        }

        return result;
    }

    private static int ArgMax(float[] logits) => Array.IndexOf(logits, logits.Max());

    private static double[] Softmax(float[] logits, float temperature = 1f)
    {
        double max = logits.Max();
        double[] e = logits.Select(l => Math.Exp((l - max) / temperature)).ToArray();
        double sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }

    [Fact]
    public void Sample_SameSeed_SameSequence()
    {
        var p = SamplingParams.Default with { Seed = 1234 };

        int[] first = Draws(p, Spread, 2000);
        int[] second = Draws(p, Spread, 2000);

        Assert.Equal(first, second);
        Assert.True(first.Distinct().Count() > 5, "a temperature-1 draw over 12 logits should visit many tokens");
    }

    [Fact]
    public void Sample_DifferentSeeds_DifferentSequences()
    {
        int[] a = Draws(SamplingParams.Default with { Seed = 1 }, Spread, 200);
        int[] b = Draws(SamplingParams.Default with { Seed = 2 }, Spread, 200);

        Assert.NotEqual(a, b);
    }

    [Theory]
    [InlineData(0f, 0, 1f, 0f)]
    [InlineData(2f, 1, 1f, 0f)]
    [InlineData(1f, 0, 0.001f, 0f)]
    [InlineData(1.5f, 0, 1f, 1f)]
    public void Sample_DegenerateTruncation_AlwaysArgmax(float temperature, int topK, float topP, float minP)
    {
        var p = new SamplingParams { Temperature = temperature, TopK = topK, TopP = topP, MinP = minP, Seed = 7 };

        int[] draws = Draws(p, Spread, 500);

        Assert.All(draws, t => Assert.Equal(ArgMax(Spread), t));
    }

    [Fact]
    public void Sample_TopK3_OnlyTheThreeBestTokens()
    {
        var p = new SamplingParams { Temperature = 2f, TopK = 3, Seed = 99 };
        int[] best = Spread.Select((l, i) => (l, i)).OrderByDescending(x => x.l).Take(3).Select(x => x.i).Order().ToArray();

        int[] draws = Draws(p, Spread, 5000);

        Assert.Equal(best, draws.Distinct().Order().ToArray());
    }

    [Fact]
    public void Sample_TopP_KeepsSmallestNucleus()
    {
        float[] logits = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.15f), MathF.Log(0.05f)];
        var p = new SamplingParams { TopP = 0.75f, Seed = 3 };

        int[] draws = Draws(p, logits, 5000);

        Assert.Equal([0, 1], draws.Distinct().Order().ToArray());
        double share0 = draws.Count(t => t == 0) / 5000.0;
        Assert.InRange(share0, 0.625 - 0.03, 0.625 + 0.03);
    }

    [Fact]
    public void Sample_MinP_DropsTokensBelowFractionOfTop()
    {
        float[] logits = [0f, MathF.Log(0.6f), MathF.Log(0.4f), MathF.Log(0.2f)];
        var p = new SamplingParams { MinP = 0.5f, Seed = 5 };

        int[] draws = Draws(p, logits, 5000);

        Assert.Equal([0, 1], draws.Distinct().Order().ToArray());
    }

    /// <summary>
    /// A vocabulary of the size models have (the draw walks it 64 tokens at a time, then token by token): the
    /// frequencies of a few likely tokens at the ends of blocks and in the last partial block, and of the thousands of
    /// unlikely ones together, follow the softmax.
    /// </summary>
    [Fact]
    public void Sample_LargeVocabulary_FrequenciesFollowSoftmax()
    {
        var random = new Random(64);
        float[] logits = [.. Enumerable.Range(0, 32_003).Select(_ => (float)(random.NextDouble() - 8))];
        int[] likely = [0, 63, 64, 5_000, 31_999, 32_002];
        for (int i = 0; i < likely.Length; i++)
        {
            logits[likely[i]] = 2f - 0.3f * i;
        }

        const int n = 20_000;
        int[] draws = Draws(new SamplingParams { Seed = 11 }, logits, n);

        double[] softmax = Softmax(logits);
        double chiSquare = 0;
        foreach (double[] cell in likely.Select(t => new[] { softmax[t], draws.Count(d => d == t) }).Append([1 - likely.Sum(t => softmax[t]), draws.Count(d => !likely.Contains(d))]))
        {
            double e = cell[0] * n;
            chiSquare += (cell[1] - e) * (cell[1] - e) / e;
        }

        // 6 degrees of freedom: P(chi2 > 22.5) = 0.001.
        Assert.True(chiSquare < 22.5, $"chi-square {chiSquare:F2}");
    }

    /// <summary>
    /// Top-p and top-k over a large vocabulary (only the likeliest tokens are sorted): every draw is in the nucleus or the
    /// top k a full sort gives, and the draws cover it.
    /// </summary>
    [Theory]
    [InlineData(0, 0.9f)]
    [InlineData(0, 0.5f)]
    [InlineData(0, 0.999f)]
    [InlineData(20, 1f)]
    [InlineData(5, 0.9f)]
    public void Sample_LargeVocabularyTruncation_DrawsExactlyTheFullSortsSet(int topK, float topP)
    {
        var random = new Random(topK + (int)(topP * 1000));
        float[] logits = [.. Enumerable.Range(0, 32_000).Select(_ => (float)(random.NextDouble() * 4 - 10))];
        for (int i = 0; i < 30; i++)
        {
            logits[random.Next(logits.Length)] = (float)(random.NextDouble() * 2);
        }

        double[] softmax = Softmax(logits);
        int[] sorted = [.. Enumerable.Range(0, logits.Length).OrderByDescending(t => softmax[t])];
        int keep = topK > 0 ? topK : sorted.Length;
        if (topP < 1f)
        {
            double total = sorted.Take(keep).Sum(t => softmax[t]), cumulative = 0;
            int nucleus = 0;
            while (nucleus < keep && cumulative < topP)
            {
                cumulative += softmax[sorted[nucleus++]] / total;
            }

            keep = nucleus;
        }

        int[] draws = Draws(new SamplingParams { TopK = topK, TopP = topP, Seed = 17 }, logits, 4_000);

        var allowed = sorted.Take(keep).ToHashSet();
        Assert.All(draws, t => Assert.Contains(t, allowed));
        if (keep <= 40)
        {
            Assert.Equal(allowed.Order(), draws.Distinct().Order());
        }
        else
        {
            Assert.True(draws.Distinct().Count() > 40, $"the nucleus of {keep} tokens: {draws.Distinct().Count()} drawn");
        }
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(0.7f)]
    public void Sample_Temperature_FrequenciesFollowSoftmax(float temperature)
    {
        float[] logits = [1.0f, 2.0f, 0.5f, -1.0f];
        const int n = 20_000;
        var p = new SamplingParams { Temperature = temperature, Seed = 2024 };

        int[] draws = Draws(p, logits, n);

        double[] expected = Softmax(logits, temperature);
        double chiSquare = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            double e = expected[i] * n;
            double o = draws.Count(t => t == i);
            chiSquare += (o - e) * (o - e) / e;
        }

        // 3 degrees of freedom: P(chi2 > 16.3) = 0.001.
        Assert.True(chiSquare < 16.3, $"chi-square {chiSquare:F2} for softmax {string.Join(", ", expected.Select(x => x.ToString("F3")))}");
    }

    [Fact]
    public void Sample_RepetitionPenalty_DividesPositiveMultipliesNegativeOfSeenTokens()
    {
        var sampler = new Sampler(SamplingParams.Greedy with { RepetitionPenalty = 2f }, [0, 1]);
        float[] first = [2f, -2f, 3f, 1f];
        float[] second = [2f, -2f, 3f, 1f];

        int t1 = sampler.Sample(first, null, out _);
        int t2 = sampler.Sample(second, null, out _);

        Assert.Equal([1f, -4f, 3f, 1f], first);
        Assert.Equal(2, t1);
        Assert.Equal([1f, -4f, 1.5f, 1f], second);
        Assert.Equal(2, t2);
    }

    [Fact]
    public void Sample_FrequencyAndPresencePenalties_SubtractPerCountAndOnce()
    {
        var sampler = new Sampler(SamplingParams.Greedy with { FrequencyPenalty = 0.5f, PresencePenalty = 0.25f }, [1, 2]);
        var seen = new List<float[]>();
        for (int i = 0; i < 3; i++)
        {
            float[] logits = [5f, 0f, 0f, 0f];
            Assert.Equal(0, sampler.Sample(logits, null, out _));
            seen.Add(logits);
        }

        Assert.Equal([5f, 0f, 0f, 0f], seen[0]);
        Assert.Equal([4.25f, 0f, 0f, 0f], seen[1]);
        Assert.Equal([3.75f, 0f, 0f, 0f], seen[2]);
    }

    [Theory]
    [InlineData(0f, 1f)]
    [InlineData(1f, 1f)]
    [InlineData(1f, 1.8f)]
    public void Sample_Logprobs_AreLogSoftmaxOfRawLogits(float temperature, float repetitionPenalty)
    {
        var p = new SamplingParams
        {
            Temperature = temperature, RepetitionPenalty = repetitionPenalty, PresencePenalty = 0.5f,
            Logprobs = true, TopLogprobs = 5, Seed = 11,
        };
        var sampler = new Sampler(p, [1, 6]);
        double[] logSoftmax = Softmax(Spread).Select(x => Math.Log(x)).ToArray();
        var top = new List<TokenLogprob>();

        for (int step = 0; step < 50; step++)
        {
            int token = sampler.Sample(Spread.ToArray(), top, out float logprob);

            Assert.Equal(logSoftmax[token], logprob, 1e-4);
            Assert.Equal(5, top.Count);
            Assert.Equal(ArgMax(Spread), top[0].TokenId);
            Assert.Equal(logSoftmax.Max(), top[0].Logprob, 1e-4);
            for (int i = 1; i < top.Count; i++)
            {
                Assert.True(top[i - 1].Logprob >= top[i].Logprob, "top logprobs must be sorted descending");
            }

            Assert.All(top, t => Assert.Equal(logSoftmax[t.TokenId], t.Logprob, 1e-4));
            Assert.Equal(Enumerable.Range(0, Spread.Length).OrderByDescending(i => Spread[i]).Take(5), top.Select(t => t.TokenId));
        }
    }

    [Fact]
    public void SamplingRandom_SameSeed_SameStreamInUnitInterval()
    {
        var a = new SamplingRandom(42);
        var b = new SamplingRandom(42);

        for (int i = 0; i < 1000; i++)
        {
            double x = a.NextDouble();
            Assert.Equal(x, b.NextDouble());
            Assert.InRange(x, 0.0, 0.9999999999999999);
        }
    }
}

using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;

namespace Dynamo.Tests.Engine.Inference;

public class RotaryEmbeddingTests
{
    private const int HeadDim = 16;
    private const int Heads = 3;

    private static ModelConfig Config(RopeLayout layout, RopeScaling? scaling = null) => new()
    {
        Architecture = "llama", Dim = HeadDim * Heads, HiddenDim = 8, Layers = 1, Heads = Heads, KvHeads = Heads, VocabSize = 8,
        ContextLength = 4096, HeadDim = HeadDim, RopeTheta = 10000f, RopeLayout = layout, RopeScaling = scaling,
    };

    private static float[] Random(int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, Heads * HeadDim).Select(_ => (float)(2 * random.NextDouble() - 1)).ToArray();
    }

    /// <summary>The (a, b) element indices of pair i of head h in the layout.</summary>
    private static (int A, int B) Pair(RopeLayout layout, int h, int i) =>
        layout == RopeLayout.Interleaved ? (h * HeadDim + 2 * i, h * HeadDim + 2 * i + 1) : (h * HeadDim + i, h * HeadDim + i + HeadDim / 2);

    /// <summary>Every (head, pair) of a vector of <see cref="Heads"/> heads.</summary>
    private static IEnumerable<(int Head, int Pair)> HeadPairs() =>
        Enumerable.Range(0, Heads).SelectMany(h => Enumerable.Range(0, HeadDim / 2).Select(i => (h, i)));

    private static float[] Rotate(RotaryEmbedding rope, float[] x, int position)
    {
        var cos = new float[HeadDim / 2];
        var sin = new float[HeadDim / 2];
        rope.Angles(position, cos, sin);
        float[] y = (float[])x.Clone();
        rope.Apply(y, Heads, cos, sin);
        return y;
    }

    /// <summary>The angle of pair i at position 1, i.e. its inverse frequency (below pi for every pair).</summary>
    private static double[] Frequencies(ModelConfig config)
    {
        var cos = new float[HeadDim / 2];
        var sin = new float[HeadDim / 2];
        new RotaryEmbedding(config).Angles(1, cos, sin);
        return Enumerable.Range(0, HeadDim / 2).Select(i => Math.Atan2(sin[i], cos[i])).ToArray();
    }

    [Theory]
    [InlineData(RopeLayout.Interleaved)]
    [InlineData(RopeLayout.HalfSplit)]
    public void Apply_AnyPosition_PreservesPairNorms(RopeLayout layout)
    {
        var rope = new RotaryEmbedding(Config(layout));
        float[] x = Random(1);

        foreach (int position in new[] { 1, 7, 100, 4000 })
        {
            float[] y = Rotate(rope, x, position);
            foreach ((int h, int i) in HeadPairs())
            {
                (int a, int b) = Pair(layout, h, i);
                double before = Math.Sqrt((double)x[a] * x[a] + (double)x[b] * x[b]);
                double after = Math.Sqrt((double)y[a] * y[a] + (double)y[b] * y[b]);
                Assert.True(Math.Abs(after - before) < 1e-6, $"position {position}, head {h}, pair {i}: {before} -> {after}");
            }
        }
    }

    [Theory]
    [InlineData(RopeLayout.Interleaved)]
    [InlineData(RopeLayout.HalfSplit)]
    public void Apply_PositionZero_IsIdentity(RopeLayout layout)
    {
        float[] x = Random(2);

        Assert.Equal(x, Rotate(new RotaryEmbedding(Config(layout)), x, 0));
    }

    [Theory]
    [InlineData(RopeLayout.Interleaved)]
    [InlineData(RopeLayout.HalfSplit)]
    public void Apply_BothLayouts_MatchFloat64Formula(RopeLayout layout)
    {
        var rope = new RotaryEmbedding(Config(layout));
        float[] x = Random(3);

        foreach (int position in new[] { 1, 5, 123, 3000 })
        {
            float[] y = Rotate(rope, x, position);
            foreach ((int h, int i) in HeadPairs())
            {
                double angle = position * Math.Pow(10000.0, -2.0 * i / HeadDim);
                (int a, int b) = Pair(layout, h, i);
                double ea = x[a] * Math.Cos(angle) - x[b] * Math.Sin(angle);
                double eb = x[a] * Math.Sin(angle) + x[b] * Math.Cos(angle);
                Assert.True(Math.Abs(y[a] - ea) < 1e-6 && Math.Abs(y[b] - eb) < 1e-6,
                    $"position {position}, head {h}, pair {i}: ({y[a]}, {y[b]}) vs ({ea}, {eb})");
            }
        }
    }

    /// <remarks>
    /// Head dim 16, theta 1e4: wavelengths 2 pi 10^(i/2) = 6.3, 19.9, 62.8, 199, 628, ... With an original context of
    /// 64 and low/high factors 1/4, wavelengths under 16 (pair 0) are kept, over 64 (pairs 3..7) are divided by the
    /// factor, and pairs 1 and 2 are blended between the two.
    /// </remarks>
    [Fact]
    public void Angles_Llama3Scaling_KeepsHighFrequenciesAndDividesLowOnes()
    {
        const float factor = 8f;
        double[] plain = Frequencies(Config(RopeLayout.Interleaved));
        double[] scaled = Frequencies(Config(RopeLayout.Interleaved, new RopeScaling(factor, 1f, 4f, 64)));

        Assert.Equal(plain[0], scaled[0], 6);
        for (int i = 1; i <= 2; i++)
        {
            Assert.True(scaled[i] < plain[i] && scaled[i] > plain[i] / factor, $"pair {i}: {scaled[i]} not between {plain[i] / factor} and {plain[i]}");
        }

        for (int i = 3; i < HeadDim / 2; i++)
        {
            Assert.True(Math.Abs(scaled[i] * factor / plain[i] - 1) < 1e-5, $"pair {i}: {scaled[i]} * {factor} vs {plain[i]}");
        }
    }
}

using Dynamo.Engine.Kernels;

namespace Dynamo.Tests.Engine.Kernels;

/// <summary>Each kernel of <see cref="Elementwise"/> against a scalar float64 formula for every length 0..256.</summary>
public class ElementwiseTests
{
    private const int MaxLength = 256;

    private static float[] Random(int length, int seed, double scale = 3)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(scale * (2 * random.NextDouble() - 1))).ToArray();
    }

    [Fact]
    public void RmsNorm_EveryLength_MatchesReference()
    {
        for (int n = 0; n <= MaxLength; n++)
        {
            float[] x = Random(n, n), weight = Random(n, n + 1000);
            var actual = new float[n];
            var expected = new float[n];

            Elementwise.RmsNorm(x, weight, 1e-5f, actual);
            RmsNormReference(x, weight, 1e-5f, expected);

            for (int i = 0; i < n; i++)
            {
                // Outputs are at most ~3 * sqrt(n) (weights up to 3, normalized x up to sqrt(n)); float32 rounding of
                // the sum of squares and the scale is a few ulps.
                Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[i])), $"length {n}, index {i}: {actual[i]} vs {expected[i]}");
            }
        }
    }

    /// <summary>Scalar reference of <see cref="Elementwise.RmsNorm"/>, in float64 (test code: the product never calls it).</summary>
    private static void RmsNormReference(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> destination)
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

    [Fact]
    public void RmsNormReference_EveryLength_MatchesFloat64Formula()
    {
        for (int n = 1; n <= MaxLength; n++)
        {
            float[] x = Random(n, n), weight = Random(n, n + 1000);
            var actual = new float[n];

            RmsNormReference(x, weight, 1e-5f, actual);

            double meanSquare = x.Sum(v => (double)v * v) / n;
            for (int i = 0; i < n; i++)
            {
                double expected = x[i] / Math.Sqrt(meanSquare + 1e-5f) * weight[i];
                Assert.True(Math.Abs(actual[i] - expected) <= 1e-6 * Math.Max(1, Math.Abs(expected)), $"length {n}, index {i}: {actual[i]} vs {expected}");
            }
        }
    }

    [Fact]
    public void Softmax_EveryLength_SumsToOneAndMatchesFloat64()
    {
        for (int n = 0; n <= MaxLength; n++)
        {
            // Scores spread over +-20 so that the max subtraction matters and many terms are tiny.
            float[] x = Random(n, n, scale: 20);
            double max = n == 0 ? 0 : x.Max();
            double[] e = x.Select(v => Math.Exp(v - max)).ToArray();
            double sum = e.Sum();

            Elementwise.Softmax(x);

            Assert.True(n == 0 || Math.Abs(x.Sum(v => (double)v) - 1) < 1e-5, $"length {n}: sum {x.Sum()}");
            for (int i = 0; i < n; i++)
            {
                double expected = e[i] / sum;
                Assert.True(Math.Abs(x[i] - expected) <= 1e-6 * Math.Max(expected, 1e-3), $"length {n}, index {i}: {x[i]} vs {expected}");
            }
        }
    }

    [Fact]
    public void Softmax_LargeScores_DoesNotOverflow()
    {
        float[] x = [1000f, 999f, -1000f];

        Elementwise.Softmax(x);

        Assert.Equal(1 / (1 + Math.Exp(-1)), x[0], 6);
        Assert.Equal(Math.Exp(-1) / (1 + Math.Exp(-1)), x[1], 6);
        Assert.Equal(0f, x[2]);
    }

    [Fact]
    public void SwiGlu_EveryLength_MatchesScalarFormula()
    {
        for (int n = 0; n <= MaxLength; n++)
        {
            // Gates over +-30 reach both saturated ends of the sigmoid.
            float[] gate = Random(n, n, scale: 30), up = Random(n, n + 1000);
            double[] expected = gate.Select((g, i) => g / (1 + Math.Exp(-(double)g)) * up[i]).ToArray();

            Elementwise.SwiGlu(gate, up);

            for (int i = 0; i < n; i++)
            {
                Assert.True(Math.Abs(gate[i] - expected[i]) <= 1e-6 * Math.Max(1, Math.Abs(expected[i])), $"length {n}, index {i}: {gate[i]} vs {expected[i]}");
            }
        }
    }

    private static void AssertSameBits(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
            {
                Assert.Fail($"{what}, index {i}: {actual[i]:R} vs {expected[i]:R}");
            }
        }
    }

    /// <summary>
    /// The transformer applies SwiGLU to n rows of the hidden dimension at once: every element must come
    /// out as it does alone (a span of one), whatever the span's length and the element's place in it.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(100)]
    [InlineData(5632)]
    public void SwiGlu_RowsInOneSpan_EveryElementEqualsItAloneBitForBit(int hidden)
    {
        foreach (int n in new[] { 1, 2, 3, 4, 7 })
        {
            float[] gate = Random(n * hidden, hidden + n, scale: 30), up = Random(n * hidden, hidden + n + 1000);
            float[] expectedGate = (float[])gate.Clone(), expectedUp = (float[])up.Clone();
            for (int i = 0; i < gate.Length; i++)
            {
                Elementwise.SwiGlu(expectedGate.AsSpan(i, 1), expectedUp.AsSpan(i, 1));
            }

            float[] rowGate = (float[])gate.Clone(), rowUp = (float[])up.Clone();
            for (int t = 0; t < n; t++)
            {
                Elementwise.SwiGlu(rowGate.AsSpan(t * hidden, hidden), rowUp.AsSpan(t * hidden, hidden));
            }

            Elementwise.SwiGlu(gate, up);

            AssertSameBits(expectedGate, gate, $"SwiGLU of {n} rows of {hidden} in one span");
            AssertSameBits(expectedGate, rowGate, $"SwiGLU of {n} rows of {hidden} row by row");
        }
    }

    /// <summary>RMSNorm of a row depends on its values only: not on where the row lies in memory (the batch position, the buffer's alignment).</summary>
    [Theory]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(100)]
    [InlineData(129)]
    [InlineData(768)]
    [InlineData(5632)]
    public void RmsNorm_SameRowAtAnyOffset_GivesIdenticalBits(int length)
    {
        float[] row = Random(length, length), weight = Random(length, length + 1);
        var expected = new float[length];
        Elementwise.RmsNorm(row, weight, 1e-5f, expected);

        // Offsets 1..16 floats cover every alignment modulo 64 bytes; the row sits among other rows as in a batch.
        for (int offset = 1; offset <= 16; offset++)
        {
            float[] batch = Random(offset + 2 * length, offset);
            row.CopyTo(batch, offset);
            var destination = new float[batch.Length];

            Elementwise.RmsNorm(batch.AsSpan(offset, length), weight, 1e-5f, destination.AsSpan(offset, length));

            AssertSameBits(expected, destination.AsSpan(offset, length), $"RMSNorm of {length} at offset {offset}");
        }
    }

    [Theory]
    [InlineData(5)]
    [InlineData(37)]
    [InlineData(129)]
    [InlineData(1000)]
    public void Softmax_SameRowAtAnyOffset_GivesIdenticalBits(int length)
    {
        float[] row = Random(length, length, scale: 20);
        float[] expected = (float[])row.Clone();
        Elementwise.Softmax(expected);

        for (int offset = 1; offset <= 16; offset++)
        {
            float[] buffer = Random(offset + 2 * length, offset);
            row.CopyTo(buffer, offset);

            Elementwise.Softmax(buffer.AsSpan(offset, length));

            AssertSameBits(expected, buffer.AsSpan(offset, length), $"softmax of {length} at offset {offset}");
        }
    }
}

using Dynamo.Engine.Kernels;

namespace Dynamo.Tests.Engine.Kernels;

/// <summary>
/// <see cref="AttentionKernel"/> against float64 formulas, and its independence from how positions are split into runs;
/// over an F16 KV cache (<see cref="F16KvElement"/>), against float64 of the halves and bit for bit against the F32
/// kernel on the same values converted.
/// </summary>
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

    /// <summary>A position's score has the same bits whichever run (and so whichever group of four) it is computed in.</summary>
    [Theory]
    [InlineData(64)]
    [InlineData(72)]
    [InlineData(13)]
    [InlineData(128)]
    public void Scores_SplitIntoAnyRuns_SameBits(int headDim)
    {
        const int count = 50;
        int stride = headDim + 3;
        float[] q = Random(headDim, 7), keys = Random(count * stride, 8);
        float[] whole = new float[count], split = new float[count], single = new float[count];
        fixed (float* pq = q, pk = keys, a = whole, b = split, c = single)
        {
            AttentionKernel.Scores(pq, pk, stride, count, headDim, 0.125f, a);
            foreach ((int start, int length) in new[] { (0, 16), (16, 1), (17, 15), (32, 18) })
            {
                AttentionKernel.Scores(pq, pk + start * stride, stride, length, headDim, 0.125f, b + start);
            }

            for (int p = 0; p < count; p++)
            {
                AttentionKernel.Scores(pq, pk + p * stride, stride, 1, headDim, 0.125f, c + p);
            }
        }

        Assert.Equal(whole.Select(BitConverter.SingleToInt32Bits), split.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(whole.Select(BitConverter.SingleToInt32Bits), single.Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>Halves spread over many binades, with zeros of both signs, subnormals and the largest finite half among them.</summary>
    private static Half[] RandomHalves(int length, int seed)
    {
        var random = new Random(seed);
        var halves = new Half[length];
        for (int i = 0; i < length; i++)
        {
            halves[i] = random.Next(16) switch
            {
                0 => BitConverter.UInt16BitsToHalf((ushort)random.Next(1, 0x400)), // subnormal
                1 => BitConverter.UInt16BitsToHalf((ushort)(0x8000 | random.Next(1, 0x400))),
                2 => random.Next(2) == 0 ? (Half)0f : (Half)(-0f),
                3 => random.Next(2) == 0 ? Half.MaxValue : Half.MinValue,
                _ => (Half)((2 * random.NextDouble() - 1) * Math.Pow(2, random.Next(-14, 4))),
            };
        }

        return halves;
    }

    [Theory]
    [InlineData(64, 1)]
    [InlineData(64, 37)]
    [InlineData(128, 20)]
    [InlineData(80, 9)]
    [InlineData(13, 5)]
    [InlineData(200, 3)]
    public void ScoresAndAccumulate_F16_MatchFloat64OfTheHalves(int headDim, int count)
    {
        int stride = headDim + 6;
        float[] q = Random(headDim, 1), weights = Random(count, 4);
        Half[] keys = [.. Random(count * stride, 2).Select(v => (Half)v)], values = [.. Random(count * stride, 3).Select(v => (Half)v)];
        float[] scores = new float[count], output = new float[headDim];
        fixed (float* pq = q, pw = weights, ps = scores, po = output)
        fixed (Half* pk = keys, pv = values)
        {
            AttentionKernel.Scores<Half, F16KvElement>(pq, pk, stride, count, headDim, 0.125f, ps);
            AttentionKernel.Accumulate<Half, F16KvElement>(pw, pv, stride, count, headDim, po);
        }

        for (int p = 0; p < count; p++)
        {
            double expected = 0, magnitude = 0;
            for (int i = 0; i < headDim; i++)
            {
                double term = q[i] * (double)keys[p * stride + i];
                expected += term;
                magnitude += Math.Abs(term);
            }

            Assert.True(Math.Abs(expected * 0.125 - scores[p]) <= 1e-6 * magnitude + 1e-7, $"score {p}: {scores[p]} vs {expected * 0.125}");
        }

        for (int c = 0; c < headDim; c++)
        {
            double expected = 0, magnitude = 0;
            for (int p = 0; p < count; p++)
            {
                double term = weights[p] * (double)values[p * stride + c];
                expected += term;
                magnitude += Math.Abs(term);
            }

            Assert.True(Math.Abs(expected - output[c]) <= 1e-6 * magnitude + 1e-7, $"column {c}: {output[c]} vs {expected}");
        }
    }

    /// <summary>
    /// Every head size 0..256 (and odd strides): the F16 kernels give the bits the F32 kernels give on the halves'
    /// float values (the conversion is exact, the arithmetic the same), subnormal, zero and extreme halves included.
    /// </summary>
    [Fact]
    public void ScoresAndAccumulate_F16EveryHeadSize_BitIdenticalToF32OfTheSameValues()
    {
        const int count = 5;
        for (int headDim = 0; headDim <= 256; headDim++)
        {
            int stride = headDim + (headDim % 3);
            float[] q = Random(Math.Max(headDim, 1), headDim), weights = Random(count, headDim + 1);
            Half[] keys = RandomHalves(count * stride + 1, headDim + 2), values = RandomHalves(count * stride + 1, headDim + 3);
            float[] keys32 = [.. keys.Select(h => (float)h)], values32 = [.. values.Select(h => (float)h)];
            float[] scores16 = new float[count], scores32 = new float[count];
            float[] out16 = Random(Math.Max(headDim, 1), headDim + 4), out32 = [.. out16];
            fixed (float* pq = q, pw = weights, s16 = scores16, s32 = scores32, o16 = out16, o32 = out32, pk32 = keys32, pv32 = values32)
            fixed (Half* pk = keys, pv = values)
            {
                AttentionKernel.Scores<Half, F16KvElement>(pq, pk, stride, count, headDim, 0.125f, s16);
                AttentionKernel.Scores(pq, pk32, stride, count, headDim, 0.125f, s32);
                AttentionKernel.Accumulate<Half, F16KvElement>(pw, pv, stride, count, headDim, o16);
                AttentionKernel.Accumulate(pw, pv32, stride, count, headDim, o32);
            }

            Assert.True(scores16.Select(BitConverter.SingleToInt32Bits).SequenceEqual(scores32.Select(BitConverter.SingleToInt32Bits)), $"head size {headDim}: scores differ");
            Assert.True(out16.Select(BitConverter.SingleToInt32Bits).SequenceEqual(out32.Select(BitConverter.SingleToInt32Bits)), $"head size {headDim}: outputs differ");
        }
    }

    /// <summary>
    /// Every head size 0..256: the scaled F16 element (halves read as 2^-112 times their values) with the query and the
    /// weights scaled by 2^112 gives the bits of the F16 element unscaled, subnormal and extreme halves included, and
    /// queries up to just below <see cref="F16ScaledKvElement.QueryLimit"/> (their scaled values stay finite).
    /// </summary>
    [Fact]
    public void ScoresAndAccumulate_F16Scaled_BitIdenticalToUnscaled()
    {
        const int count = 21;
        float two112 = F16ScaledKvElement.Scale;
        Assert.Equal(Math.Pow(2, 112), two112);
        for (int headDim = 0; headDim <= 256; headDim++)
        {
            int stride = headDim + (headDim % 3);
            float[] q = Random(Math.Max(headDim, 1), headDim + 7), weights = Random(count, headDim + 8);
            if (headDim > 0)
            {
                q[headDim / 2] = headDim % 2 == 0 ? 65535f : -65535f;
            }

            float[] qScaled = [.. q.Select(v => v * two112)], weightsScaled = [.. weights.Select(v => v * two112)];
            Half[] keys = RandomHalves(count * stride + 1, headDim + 9), values = RandomHalves(count * stride + 1, headDim + 10);
            float[] scores = new float[count], scoresScaled = new float[count];
            float[] output = Random(Math.Max(headDim, 1), headDim + 11), outputScaled = [.. output];
            fixed (float* pq = q, pqs = qScaled, pw = weights, pws = weightsScaled, s = scores, ss = scoresScaled, o = output, os = outputScaled)
            fixed (Half* pk = keys, pv = values)
            {
                AttentionKernel.Scores<Half, F16KvElement>(pq, pk, stride, count, headDim, 0.125f, s);
                AttentionKernel.Scores<Half, F16ScaledKvElement>(pqs, pk, stride, count, headDim, 0.125f, ss);
                AttentionKernel.Accumulate<Half, F16KvElement>(pw, pv, stride, count, headDim, o);
                AttentionKernel.Accumulate<Half, F16ScaledKvElement>(pws, pv, stride, count, headDim, os);
            }

            Assert.True(scores.Select(BitConverter.SingleToInt32Bits).SequenceEqual(scoresScaled.Select(BitConverter.SingleToInt32Bits)), $"head size {headDim}: scores differ");
            Assert.True(output.Select(BitConverter.SingleToInt32Bits).SequenceEqual(outputScaled.Select(BitConverter.SingleToInt32Bits)), $"head size {headDim}: outputs differ");
        }
    }

    /// <summary>The scaled F16 element reads every finite half pattern as exactly 2^-112 times its value, sixteen, eight and one at a time.</summary>
    [Fact]
    public void F16ScaledKvElement_EveryFiniteHalf_ExactlyTwoToTheMinus112TimesIt()
    {
        ushort[] bits = [.. Enumerable.Range(0, 65536).Select(i => (ushort)i).Where(b => (b & 0x7C00) != 0x7C00)];
        new Random(112).Shuffle(bits);
        Array.Resize(ref bits, (bits.Length + 15) / 16 * 16);
        fixed (ushort* p = bits)
        {
            for (int i = 0; i < bits.Length; i += 16)
            {
                F16ScaledKvElement.Load16((Half*)p + i, out var lo, out var hi);
                var eight = F16ScaledKvElement.Load8((Half*)p + i + 8);
                for (int j = 0; j < 16; j++)
                {
                    // Exact in double, and as a float: at least 2^-136 and eleven significant bits.
                    float expected = (float)((double)BitConverter.UInt16BitsToHalf(bits[i + j]) * Math.Pow(2, -112));
                    float[] got = [j < 8 ? lo[j] : hi[j - 8], F16ScaledKvElement.Load1((Half*)p + i + j), j < 8 ? expected : eight[j - 8]];
                    foreach (float g in got)
                    {
                        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(g), $"half 0x{bits[i + j]:X4}: {g} vs {expected}");
                    }
                }
            }
        }
    }

    /// <summary>
    /// The F16 element reads every one of the 65536 half patterns as the exact float (NaNs as NaNs), eight and sixteen at a
    /// time and one by one, and so does the block conversion: in order (each group of sixteen of one kind), and shuffled, so
    /// that infinities, NaNs, zeros and subnormals share groups with normal halves.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void F16KvElement_EveryHalfPattern_ExactFloat(bool shuffled)
    {
        ushort[] bits = [.. Enumerable.Range(0, 65536).Select(i => (ushort)i)];
        if (shuffled)
        {
            new Random(16).Shuffle(bits);
        }

        float[] block = new float[65536 + 5];
        fixed (ushort* p = bits)
        fixed (float* pb = block)
        {
            HalfConvert.F16ToFloat((byte*)p, pb, 65536);
            HalfConvert.F16ToFloat((byte*)p, pb + 65536, 5);
            for (int i = 0; i < 65536; i += 16)
            {
                F16KvElement.Load16((Half*)p + i, out var lo, out var hi);
                var eight = F16KvElement.Load8((Half*)p + i + 8);
                for (int j = 0; j < 16; j++)
                {
                    float expected = (float)BitConverter.UInt16BitsToHalf(bits[i + j]);
                    float[] got = [j < 8 ? lo[j] : hi[j - 8], F16KvElement.Load1((Half*)p + i + j), j < 8 ? expected : eight[j - 8], block[i + j], i + j < 5 ? block[65536 + i + j] : expected];
                    foreach (float g in got)
                    {
                        Assert.True(float.IsNaN(expected) ? float.IsNaN(g) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(g), $"half 0x{bits[i + j]:X4}: {g} vs {expected}");
                    }
                }
            }
        }
    }
}

using Dynamo.Engine.Models;

namespace Dynamo.Engine.Inference;

/// <summary>
/// Rotary position embeddings for one model: per-pair inverse frequencies (with Llama 3 scaling or a
/// file's own frequency factors), applied in the pairing the checkpoint's layout needs. Angles are
/// computed in float64, so long contexts do not lose precision.
/// </summary>
public sealed class RotaryEmbedding
{
    private readonly double[] _invFreq;
    private readonly int _headDim;
    private readonly RopeLayout _layout;

    public RotaryEmbedding(ModelConfig config, ReadOnlySpan<float> freqFactors = default)
    {
        _headDim = config.HeadDim;
        _layout = config.RopeLayout;
        int half = _headDim / 2;
        _invFreq = new double[half];
        for (int i = 0; i < half; i++)
        {
            double f = 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / _headDim);
            if (!freqFactors.IsEmpty)
            {
                f /= freqFactors[i];
            }
            else if (config.RopeScaling is { } s)
            {
                f = ScaleLlama3(f, s);
            }

            _invFreq[i] = f;
        }
    }

    /// <summary>The "llama3" rope_type: long wavelengths divided by the factor, short ones kept, a smooth blend between.</summary>
    private static double ScaleLlama3(double freq, RopeScaling s)
    {
        double lowWavelen = s.OriginalContextLength / s.LowFreqFactor;
        double highWavelen = s.OriginalContextLength / s.HighFreqFactor;
        double wavelen = 2 * Math.PI / freq;
        if (wavelen < highWavelen)
        {
            return freq;
        }

        if (wavelen > lowWavelen)
        {
            return freq / s.Factor;
        }

        double smooth = (s.OriginalContextLength / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (1 - smooth) * freq / s.Factor + smooth * freq;
    }

    /// <summary>Fills cos/sin tables (headDim/2 each) for one position.</summary>
    public void Angles(int position, Span<float> cos, Span<float> sin)
    {
        for (int i = 0; i < _invFreq.Length; i++)
        {
            (double s, double c) = Math.SinCos(position * _invFreq[i]);
            cos[i] = (float)c;
            sin[i] = (float)s;
        }
    }

    /// <summary>Rotates every head of <paramref name="x"/> (heads x headDim) by precomputed angles.</summary>
    public void Apply(Span<float> x, int heads, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = _headDim / 2;
        for (int h = 0; h < heads; h++)
        {
            Span<float> v = x.Slice(h * _headDim, _headDim);
            if (_layout == RopeLayout.Interleaved)
            {
                for (int i = 0; i < half; i++)
                {
                    float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * cos[i] - b * sin[i];
                    v[2 * i + 1] = a * sin[i] + b * cos[i];
                }
            }
            else
            {
                for (int i = 0; i < half; i++)
                {
                    float a = v[i], b = v[i + half];
                    v[i] = a * cos[i] - b * sin[i];
                    v[i + half] = b * cos[i] + a * sin[i];
                }
            }
        }
    }
}

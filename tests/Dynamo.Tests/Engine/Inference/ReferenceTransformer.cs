using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>
/// A plain float64 Llama-family forward pass, written from the papers and the Hugging Face modeling code rather
/// than from src/: every position of the prompt is recomputed from scratch (no KV cache), one scalar loop per
/// formula. Weights are read as floats through <c>MatMul.DequantizeRow</c> (so for a quantized file the
/// reference runs on exactly the dequantized weights) and widened to double; everything after that is double.
/// Covers RMSNorm, grouped-query causal attention, RoPE in both pairings with optional Llama 3 frequency scaling,
/// Qwen2 QKV bias, Qwen3 per-head QK RMSNorm, SwiGLU, tied or separate output projection.
/// A file's rope_freqs.weight (how llama.cpp stores Llama 3 scaling) divides the frequencies instead, as llama.cpp does.
/// </summary>
internal sealed class ReferenceTransformer
{
    private readonly ModelConfig _c;
    private readonly double[][] _embedding;
    private readonly double[][] _output;
    private readonly double[] _outputNorm;
    private readonly LayerWeights[] _layers;
    private readonly double[]? _ropeFreqs;

    public ReferenceTransformer(IModelWeights weights)
    {
        _c = weights.Config;
        IReadOnlyDictionary<string, Tensor> t = weights.Tensors;
        _embedding = Matrix(t["token_embd.weight"]);
        _output = t.TryGetValue("output.weight", out Tensor? output) ? Matrix(output) : _embedding;
        _outputNorm = Vector(t["output_norm.weight"]);
        _ropeFreqs = t.TryGetValue("rope_freqs.weight", out Tensor? freqs) ? Vector(freqs) : null;
        _layers = new LayerWeights[_c.Layers];
        for (int l = 0; l < _c.Layers; l++)
        {
            string p = $"blk.{l}.";
            double[]? Optional(string name) => t.TryGetValue(p + name, out Tensor? v) ? Vector(v) : null;
            _layers[l] = new LayerWeights(
                Vector(t[p + "attn_norm.weight"]),
                Matrix(t[p + "attn_q.weight"]), Matrix(t[p + "attn_k.weight"]), Matrix(t[p + "attn_v.weight"]), Matrix(t[p + "attn_output.weight"]),
                Optional("attn_q.bias"), Optional("attn_k.bias"), Optional("attn_v.bias"),
                Optional("attn_q_norm.weight"), Optional("attn_k_norm.weight"),
                Vector(t[p + "ffn_norm.weight"]),
                Matrix(t[p + "ffn_gate.weight"]), Matrix(t[p + "ffn_up.weight"]), Matrix(t[p + "ffn_down.weight"]));
        }
    }

    /// <summary>Logits of every position of <paramref name="tokens"/> (row-major, tokens x vocab), rounded to float at the end.</summary>
    public float[] Forward(IReadOnlyList<int> tokens)
    {
        int n = tokens.Count, hd = _c.HeadDim, group = _c.Heads / _c.KvHeads;
        var x = new double[n][];
        for (int t = 0; t < n; t++)
        {
            x[t] = (double[])_embedding[tokens[t]].Clone();
        }

        foreach (LayerWeights w in _layers)
        {
            var q = new double[n][];
            var k = new double[n][];
            var v = new double[n][];
            for (int t = 0; t < n; t++)
            {
                double[] h = RmsNorm(x[t], w.AttnNorm);
                q[t] = Add(MatVec(w.Wq, h), w.Bq);
                k[t] = Add(MatVec(w.Wk, h), w.Bk);
                v[t] = Add(MatVec(w.Wv, h), w.Bv);
                for (int head = 0; head < _c.Heads; head++)
                {
                    NormAndRotateHead(q[t], head * hd, w.QNorm, t);
                }

                for (int head = 0; head < _c.KvHeads; head++)
                {
                    NormAndRotateHead(k[t], head * hd, w.KNorm, t);
                }
            }

            for (int t = 0; t < n; t++)
            {
                var attended = new double[_c.Heads * hd];
                for (int head = 0; head < _c.Heads; head++)
                {
                    int qo = head * hd, kvo = head / group * hd;
                    var scores = new double[t + 1];
                    for (int p = 0; p <= t; p++)
                    {
                        double dot = 0;
                        for (int i = 0; i < hd; i++)
                        {
                            dot += q[t][qo + i] * k[p][kvo + i];
                        }

                        scores[p] = dot / Math.Sqrt(hd);
                    }

                    double max = scores.Max(), sum = 0;
                    for (int p = 0; p <= t; p++)
                    {
                        scores[p] = Math.Exp(scores[p] - max);
                        sum += scores[p];
                    }

                    for (int p = 0; p <= t; p++)
                    {
                        for (int i = 0; i < hd; i++)
                        {
                            attended[qo + i] += scores[p] / sum * v[p][kvo + i];
                        }
                    }
                }

                x[t] = Add(x[t], MatVec(w.Wo, attended));
            }

            for (int t = 0; t < n; t++)
            {
                double[] h = RmsNorm(x[t], w.FfnNorm);
                double[] gate = MatVec(w.WGate, h), up = MatVec(w.WUp, h);
                for (int i = 0; i < gate.Length; i++)
                {
                    double g = gate[i];
                    gate[i] = g / (1 + Math.Exp(-g)) * up[i];
                }

                x[t] = Add(x[t], MatVec(w.WDown, gate));
            }
        }

        var logits = new float[n * _c.VocabSize];
        for (int t = 0; t < n; t++)
        {
            double[] row = MatVec(_output, RmsNorm(x[t], _outputNorm));
            for (int i = 0; i < row.Length; i++)
            {
                logits[t * _c.VocabSize + i] = (float)row[i];
            }
        }

        return logits;
    }

    /// <summary>Qwen3's per-head RMSNorm (when the layer has one), then the rotation of that head for position <paramref name="pos"/>.</summary>
    private void NormAndRotateHead(double[] vec, int offset, double[]? norm, int pos)
    {
        int hd = _c.HeadDim, half = hd / 2;
        if (norm is not null)
        {
            double[] normed = RmsNorm(vec[offset..(offset + hd)], norm);
            normed.CopyTo(vec, offset);
        }

        for (int i = 0; i < half; i++)
        {
            double angle = pos * InverseFrequency(i);
            double cos = Math.Cos(angle), sin = Math.Sin(angle);
            // Interleaved (Meta / llama2.c / llama GGUF): pairs (2i, 2i+1). HalfSplit (HF rotate_half): pairs (i, i+half).
            (int a, int b) = _c.RopeLayout == RopeLayout.Interleaved ? (offset + 2 * i, offset + 2 * i + 1) : (offset + i, offset + i + half);
            double x0 = vec[a], x1 = vec[b];
            vec[a] = x0 * cos - x1 * sin;
            vec[b] = x0 * sin + x1 * cos;
        }
    }

    /// <summary>
    /// theta^(-2i/headDim), divided by the file's rope_freqs factor if it has one, else with Hugging Face's
    /// _compute_llama3_parameters when the config has rope scaling.
    /// </summary>
    private double InverseFrequency(int i)
    {
        double freq = Math.Pow(_c.RopeTheta, -2.0 * i / _c.HeadDim);
        if (_ropeFreqs is not null)
        {
            return freq / _ropeFreqs[i];
        }

        return _c.RopeScaling is { } s ? Llama3Scaled(freq, s) : freq;
    }

    /// <summary>Hugging Face's _compute_llama3_parameters for one frequency.</summary>
    public static double Llama3Scaled(double freq, RopeScaling s)
    {
        double wavelength = 2 * Math.PI / freq;
        double lowFreqWavelength = s.OriginalContextLength / (double)s.LowFreqFactor;
        double highFreqWavelength = s.OriginalContextLength / (double)s.HighFreqFactor;
        if (wavelength < highFreqWavelength)
        {
            return freq;
        }

        if (wavelength > lowFreqWavelength)
        {
            return freq / s.Factor;
        }

        double smooth = (s.OriginalContextLength / wavelength - s.LowFreqFactor) / ((double)s.HighFreqFactor - s.LowFreqFactor);
        return (1 - smooth) * freq / s.Factor + smooth * freq;
    }

    private double[] RmsNorm(double[] x, double[] weight)
    {
        double meanSquare = x.Sum(v => v * v) / x.Length;
        double scale = 1 / Math.Sqrt(meanSquare + _c.RmsNormEps);
        return x.Select((v, i) => v * scale * weight[i]).ToArray();
    }

    private static double[] MatVec(double[][] w, double[] x)
    {
        var y = new double[w.Length];
        for (int r = 0; r < w.Length; r++)
        {
            double sum = 0;
            for (int c = 0; c < x.Length; c++)
            {
                sum += w[r][c] * x[c];
            }

            y[r] = sum;
        }

        return y;
    }

    private static double[] Add(double[] a, double[]? b) => b is null ? a : a.Select((v, i) => v + b[i]).ToArray();

    /// <summary>A weight matrix as [out][in] doubles (ggml dims [in, out]).</summary>
    private static double[][] Matrix(Tensor t)
    {
        var rows = new double[t.Rows][];
        var row = new float[t.Cols];
        for (int r = 0; r < t.Rows; r++)
        {
            MatMul.DequantizeRow(t, r, row);
            rows[r] = Array.ConvertAll(row, f => (double)f);
        }

        return rows;
    }

    private static double[] Vector(Tensor t) => Matrix(t).SelectMany(r => r).ToArray();

    private sealed record LayerWeights(
        double[] AttnNorm, double[][] Wq, double[][] Wk, double[][] Wv, double[][] Wo,
        double[]? Bq, double[]? Bk, double[]? Bv, double[]? QNorm, double[]? KNorm,
        double[] FfnNorm, double[][] WGate, double[][] WUp, double[][] WDown);
}

using System.Runtime.Intrinsics;
using Dynamo.Llm.Engines;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Dynamo.Engine.Sampling;

/// <summary>
/// Chooses the next token of one sequence. Order, as vLLM applies it: repetition, frequency and
/// presence penalties; then greedy (temperature 0) or temperature, top-k, top-p, min-p and a draw from
/// the seeded generator. Log-probabilities are those of the model's raw logits.
/// One instance per sequence: it counts the tokens the sequence has produced. The draw of output position n
/// depends only on the seed and n (<see cref="SamplingRandom.UnitAt"/>), so a request migrated with its first n
/// tokens (<c>resumedOutputTokens</c>) continues exactly as it would have.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingParams _p;
    private readonly ulong _seed;
    private int _position;
    private readonly Dictionary<int, int> _outputCounts = [];
    private readonly HashSet<int> _promptTokens;
    private float[] _probs = [];
    private float[] _keys = [];
    private int[] _order = [];
    private float[]? _rawLogits;

    /// <param name="parameters">The request's sampling.</param>
    /// <param name="promptTokens">The prompt (with any resumed output at its end).</param>
    /// <param name="resumedOutputTokens">How many of the prompt's last tokens are output of an earlier attempt of the request.</param>
    public Sampler(SamplingParams parameters, IReadOnlyList<int> promptTokens, int resumedOutputTokens = 0)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(promptTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(resumedOutputTokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(resumedOutputTokens, promptTokens.Count);
        _p = parameters;
        _seed = parameters.Seed ?? (ulong)Random.Shared.NextInt64();
        int promptLength = promptTokens.Count - resumedOutputTokens;
        _promptTokens = parameters.RepetitionPenalty != 1f ? [.. promptTokens.Take(promptLength)] : [];
        for (int i = promptLength; i < promptTokens.Count; i++)
        {
            _outputCounts[promptTokens[i]] = _outputCounts.GetValueOrDefault(promptTokens[i]) + 1;
        }

        _position = resumedOutputTokens;
    }

    /// <summary>Picks the next token from <paramref name="logits"/> (modified in place) and records it.</summary>
    public int Sample(Span<float> logits, List<TokenLogprob>? topLogprobs, out float logprob)
    {
        float logSumExp = 0;
        bool wantLogprobs = _p.Logprobs;
        if (wantLogprobs)
        {
            logSumExp = LogSumExp(logits);
            if (topLogprobs is not null && _p.TopLogprobs > 0)
            {
                TopK(logits, _p.TopLogprobs, logSumExp, topLogprobs);
            }
        }

        // Log-probabilities are reported for the raw logits, so remember the chosen one before penalties.
        ApplyPenalties(logits);
        int token = _p.Temperature == 0 || _p.TopK == 1 ? TensorPrimitives.IndexOfMax<float>(logits) : Draw(logits);
        logprob = 0;
        if (wantLogprobs)
        {
            logprob = RawLogprob(token, logits, logSumExp);
        }

        _outputCounts[token] = _outputCounts.GetValueOrDefault(token) + 1;
        _position++;
        return token;
    }

    /// <summary>The chosen token's log-probability under the raw logits (saved before penalties when there were any).</summary>
    private float RawLogprob(int token, ReadOnlySpan<float> logits, float logSumExp) =>
        (_rawLogits is not null ? _rawLogits[token] : logits[token]) - logSumExp;

    private void ApplyPenalties(Span<float> logits)
    {
        bool any = _p.RepetitionPenalty != 1f || _p.FrequencyPenalty != 0f || _p.PresencePenalty != 0f;
        if (!any)
        {
            _rawLogits = null;
            return;
        }

        if (_p.Logprobs)
        {
            if (_rawLogits is null || _rawLogits.Length != logits.Length)
            {
                _rawLogits = new float[logits.Length];
            }

            logits.CopyTo(_rawLogits);
        }

        if (_p.RepetitionPenalty != 1f)
        {
            float r = _p.RepetitionPenalty;
            foreach (int t in _promptTokens.Concat(_outputCounts.Keys).Distinct())
            {
                logits[t] = logits[t] > 0 ? logits[t] / r : logits[t] * r;
            }
        }

        foreach ((int t, int count) in _outputCounts)
        {
            logits[t] -= _p.FrequencyPenalty * count + _p.PresencePenalty;
        }
    }

    private int Draw(Span<float> logits)
    {
        int n = logits.Length;
        if (_probs.Length != n)
        {
            _probs = new float[n];
            _order = new int[n];
            _keys = new float[n];
        }

        Span<float> probs = _probs;
        TensorPrimitives.Divide(logits, _p.Temperature, probs);
        float max = TensorPrimitives.Max(probs);
        TensorPrimitives.Subtract(probs, max, probs);
        TensorPrimitives.Exp(probs, probs);

        // Candidates: every token, or the top k, ordered by probability (most likely first).
        int k = _p.TopK > 0 ? Math.Min(_p.TopK, n) : n;
        bool needOrder = k < n || _p.TopP < 1f;
        float threshold = _p.MinP > 0 ? _p.MinP : 0f;
        if (!needOrder && threshold == 0)
        {
            return DrawAll(probs, SamplingRandom.UnitAt(_seed, _position));
        }

        int count = n;
        double total;
        Span<int> order = _order;
        if (needOrder)
        {
            int sorted = SortCandidates(probs, k);
            count = Math.Min(k, sorted);
            if (k < n)
            {
                // Top-k: the mass of the k kept, in their order.
                total = 0;
                for (int i = 0; i < count; i++)
                {
                    total += probs[order[i]];
                }
            }
            else
            {
                total = SumAsDouble(probs);
            }

            if (_p.TopP < 1f)
            {
                double cumulative = 0;
                int keep = 0;
                while (keep < count)
                {
                    cumulative += probs[order[keep]] / total;
                    keep++;
                    if (cumulative >= _p.TopP)
                    {
                        break;
                    }
                }

                count = keep;
            }
        }

        // min_p: relative to the most likely token, whose unnormalised probability is exp(0) = 1.
        double mass = 0;
        for (int i = 0; i < count; i++)
        {
            float pi = probs[needOrder ? order[i] : i];
            if (pi >= threshold)
            {
                mass += pi;
            }
        }

        double u = SamplingRandom.UnitAt(_seed, _position) * mass;
        int last = -1;
        for (int i = 0; i < count; i++)
        {
            int id = needOrder ? order[i] : i;
            float pi = probs[id];
            if (pi < threshold)
            {
                continue;
            }

            last = id;
            u -= pi;
            if (u < 0)
            {
                return id;
            }
        }

        return last >= 0 ? last : TensorPrimitives.IndexOfMax<float>(logits);
    }

    /// <summary>
    /// A draw over every token (no truncation): <paramref name="unit"/> times the total mass, walked down a block of 64
    /// tokens at a time (each block's sum vectorized), then token by token inside the block where it runs out.
    /// </summary>
    private static int DrawAll(ReadOnlySpan<float> probs, double unit)
    {
        double u = unit * SumAsDouble(probs);
        int n = probs.Length, i = 0;
        for (; i + 64 <= n; i += 64)
        {
            double block = SumAsDouble(probs.Slice(i, 64));
            if (u - block < 0)
            {
                break;
            }

            u -= block;
        }

        for (; i < n; i++)
        {
            u -= probs[i];
            if (u < 0)
            {
                return i;
            }
        }

        // Rounding left a sliver: the last token with any mass.
        for (i = n - 1; i > 0 && !(probs[i] > 0); i--)
        {
        }

        return i;
    }

    /// <summary>
    /// Puts the most likely tokens first in <c>_order</c>, sorted by probability, and returns how many: at least
    /// <paramref name="k"/> (top-k) when k is below the vocabulary, else enough to hold the top-p nucleus. Rather than
    /// sorting the whole vocabulary (about half a millisecond for 32,000 tokens, once per token of every sequence), it
    /// takes those at or above a threshold halved until they are enough (every token at or above a threshold comes
    /// before every token below it in the sorted order, so they are its first ones), and sorts only them.
    /// </summary>
    private int SortCandidates(ReadOnlySpan<float> probs, int k)
    {
        int n = probs.Length;
        double need = k < n ? 0 : _p.TopP * SumAsDouble(probs);
        float t = 0.5f;
        for (int halvings = 1; ; halvings *= 2, t = MathF.ScaleB(1f, -halvings))
        {
            if (halvings > 64)
            {
                t = 0f;
                break;
            }

            (int above, double mass) = CountAbove(probs, t);
            if (k < n ? above >= k : mass >= need)
            {
                break;
            }
        }

        int m = 0;
        float[] keys = _keys;
        int[] order = _order;
        for (int i = 0; i < n; i++)
        {
            if (probs[i] >= t)
            {
                order[m] = i;
                keys[m++] = -probs[i];
            }
        }

        Array.Sort(keys, order, 0, m);
        return m;
    }

    /// <summary>How many of <paramref name="probs"/> are at or above <paramref name="t"/>, and their sum.</summary>
    private static (int Count, double Mass) CountAbove(ReadOnlySpan<float> probs, float t)
    {
        int count = 0, i = 0;
        double mass = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> tv = Vector256.Create(t);
            Vector256<int> c = Vector256<int>.Zero;
            Vector256<double> m0 = Vector256<double>.Zero, m1 = Vector256<double>.Zero;
            for (; i + 8 <= probs.Length; i += 8)
            {
                Vector256<float> v = Vector256.Create(probs.Slice(i, 8));
                Vector256<float> keep = Vector256.GreaterThanOrEqual(v, tv);
                c -= keep.AsInt32();
                (Vector256<double> lo, Vector256<double> hi) = Vector256.Widen(v & keep);
                m0 += lo;
                m1 += hi;
            }

            count = Vector256.Sum(c);
            mass = Vector256.Sum(m0 + m1);
        }

        for (; i < probs.Length; i++)
        {
            if (probs[i] >= t)
            {
                count++;
                mass += probs[i];
            }
        }

        return (count, mass);
    }

    /// <summary>The sum of <paramref name="x"/> in double: sixteen lanes of partial sums, then the rest; one order for a given length.</summary>
    private static double SumAsDouble(ReadOnlySpan<float> x)
    {
        int i = 0;
        double total = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<double> a0 = Vector256<double>.Zero, a1 = Vector256<double>.Zero, a2 = Vector256<double>.Zero, a3 = Vector256<double>.Zero;
            for (; i + 16 <= x.Length; i += 16)
            {
                (Vector256<double> l0, Vector256<double> h0) = Vector256.Widen(Vector256.Create(x.Slice(i, 8)));
                (Vector256<double> l1, Vector256<double> h1) = Vector256.Widen(Vector256.Create(x.Slice(i + 8, 8)));
                a0 += l0;
                a1 += h0;
                a2 += l1;
                a3 += h1;
            }

            total = Vector256.Sum((a0 + a1) + (a2 + a3));
        }

        for (; i < x.Length; i++)
        {
            total += x[i];
        }

        return total;
    }

    private static float LogSumExp(ReadOnlySpan<float> logits)
    {
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float l in logits)
        {
            sum += Math.Exp(l - max);
        }

        return max + (float)Math.Log(sum);
    }

    private static void TopK(ReadOnlySpan<float> logits, int k, float logSumExp, List<TokenLogprob> result)
    {
        result.Clear();
        // Insertion into a small sorted list: k <= 20.
        for (int i = 0; i < logits.Length; i++)
        {
            float l = logits[i];
            if (result.Count == k && l <= result[^1].Logprob + logSumExp)
            {
                continue;
            }

            var item = new TokenLogprob(i, l - logSumExp);
            int at = result.Count;
            while (at > 0 && result[at - 1].Logprob < item.Logprob)
            {
                at--;
            }

            result.Insert(at, item);
            if (result.Count > k)
            {
                result.RemoveAt(k);
            }
        }
    }
}

namespace Dynamo.Llm.Scheduling;

/// <summary>
/// The cost of a step (<see cref="StepCost"/>: fixed + per prefill token + per decoding sequence), learned online from
/// the engine's own steps by recursive least squares with a forgetting factor: each observed step moves the three
/// coefficients, the older steps weigh less (half weight after about 35 steps), so the estimate follows a machine
/// whose speed changes (other load, longer contexts). The scheduler asks it how many prefill tokens fit a step-time
/// budget (<see cref="SchedulerOptions.MaxStepMs"/>).
/// <para>
/// Without a seed it knows nothing until the first step, and its prior says that a decoding sequence costs about what
/// a prefill token costs (both are one row through the weights), so the first steps, usually prefill alone, already
/// give a usable decode cost; the steps that mix them tell the two apart. The uncertainty of each coefficient is
/// capped (at the unseeded prior's, or the seed's if larger), so that long runs of steps of one shape (no news about a coefficient) do not make it jump
/// at the next step of another shape. After a few steps a step that takes more than twice its prediction (a stall
/// of the machine) counts as twice its prediction. Not thread-safe: the engine's loop owns it. Allocates nothing
/// per step.
/// </para>
/// </summary>
public sealed class StepCostModel
{
    /// <summary>Weight of a step relative to the next one's: 0.98 halves a step's weight after about 35 steps.</summary>
    public const double Forgetting = 0.98;

    /// <summary>Steps observed before outliers are clipped (the first ones set the scale).</summary>
    private const int ClipAfter = 8;

    /// <summary>Standard deviation of the unseeded prior's fixed cost, in milliseconds.</summary>
    private const double PriorFixedSd = 50;

    /// <summary>Standard deviation of the unseeded prior's cost per prefill token and per decoding sequence, in milliseconds.</summary>
    private const double PriorPerTokenSd = 5;

    private readonly double[] _theta = new double[3];
    private readonly double[] _cov = new double[9];
    private readonly double[] _cap = new double[3];

    /// <summary>No seed: nothing known until the first observed step (<see cref="IsReady"/> false).</summary>
    public StepCostModel()
    {
        // The two per-token costs correlated 0.9 (a decode row and a prefill row cost about the same).
        Init(0, 0, 0, PriorFixedSd, PriorPerTokenSd, PriorPerTokenSd);
    }

    /// <summary>Seeded (a warm-up's measurement, or a known cost model): ready at once, each coefficient's uncertainty half its value.</summary>
    public StepCostModel(StepCost seed)
    {
        double Sd(double v) => Math.Max(0.5 * Math.Abs(v), 0.01);
        Init(seed.StepMs, seed.PrefillMsPerToken, seed.DecodeMsPerSequence, Sd(seed.StepMs), Sd(seed.PrefillMsPerToken), Sd(seed.DecodeMsPerSequence));
        Seeded = true;
    }

    /// <summary>Steps observed so far.</summary>
    public long Observations { get; private set; }

    /// <summary>Whether it was seeded.</summary>
    public bool Seeded { get; }

    /// <summary>Whether it can predict: seeded, or at least one step observed.</summary>
    public bool IsReady => Seeded || Observations > 0;

    /// <summary>The current estimate (each coefficient at least 0).</summary>
    public StepCost Current => new(Math.Max(0, _theta[0]), Math.Max(0, _theta[1]), Math.Max(0, _theta[2]));

    /// <summary>Predicted time of a step of <paramref name="prefillTokens"/> prefill tokens and <paramref name="decodeTokens"/> decoding sequences, in milliseconds.</summary>
    public double Predict(int prefillTokens, int decodeTokens) => Current.Predict(prefillTokens, decodeTokens);

    /// <summary>
    /// The smallest decode batch that reaches nine tenths of the decode throughput a batch can reach,
    /// <c>ceil(9 x StepMs / DecodeMsPerSequence)</c> and at least 1: <c>N / (StepMs + N x DecodeMsPerSequence)</c> is 9/10 of
    /// its limit <c>1 / DecodeMsPerSequence</c> there. The step-time budget admits up to it whatever it predicts, so that
    /// a budget too small for the machine costs latency, not throughput.
    /// </summary>
    public int EfficientBatch
    {
        get
        {
            StepCost c = Current;
            double n = c.DecodeMsPerSequence <= 0 ? double.PositiveInfinity : Math.Ceiling(9 * c.StepMs / c.DecodeMsPerSequence);
            return n >= int.MaxValue ? int.MaxValue : Math.Max(1, (int)n);
        }
    }

    /// <summary>
    /// The most prefill tokens a step with <paramref name="decodeTokens"/> decoding sequences may add and still be
    /// predicted within <paramref name="maxMs"/>: 0 when the decodes alone take it all, <see cref="int.MaxValue"/> when
    /// prefill is (as far as known) free.
    /// </summary>
    public int PrefillTokensWithin(double maxMs, int decodeTokens)
    {
        StepCost c = Current;
        double room = maxMs - c.StepMs - c.DecodeMsPerSequence * decodeTokens;
        if (room <= 0)
        {
            return 0;
        }

        double tokens = c.PrefillMsPerToken <= 0 ? double.PositiveInfinity : Math.Floor(room / c.PrefillMsPerToken);
        return tokens >= int.MaxValue ? int.MaxValue : (int)tokens;
    }

    /// <summary>Learns from a step that ran <paramref name="prefillTokens"/> prefill tokens and <paramref name="decodeTokens"/> decodes in <paramref name="ms"/> milliseconds.</summary>
    public void Observe(int prefillTokens, int decodeTokens, double ms)
    {
        if (!double.IsFinite(ms) || ms < 0 || prefillTokens + decodeTokens <= 0)
        {
            return;
        }

        double x0 = 1, x1 = prefillTokens, x2 = decodeTokens;
        double[] p = _cov;
        double px0 = p[0] * x0 + p[1] * x1 + p[2] * x2;
        double px1 = p[3] * x0 + p[4] * x1 + p[5] * x2;
        double px2 = p[6] * x0 + p[7] * x1 + p[8] * x2;
        double s = Forgetting + x0 * px0 + x1 * px1 + x2 * px2;
        double predicted = _theta[0] * x0 + _theta[1] * x1 + _theta[2] * x2;
        double error = ms - predicted;
        if (Observations >= ClipAfter || Seeded)
        {
            double limit = Math.Max(1, Math.Abs(predicted));
            error = Math.Clamp(error, -limit, limit);
        }

        double k0 = px0 / s, k1 = px1 / s, k2 = px2 / s;
        _theta[0] += k0 * error;
        _theta[1] += k1 * error;
        _theta[2] += k2 * error;

        // P = (P - k (P x)^T) / lambda, kept symmetric.
        ReadOnlySpan<double> k = [k0, k1, k2];
        ReadOnlySpan<double> px = [px0, px1, px2];
        for (int i = 0; i < 3; i++)
        {
            for (int j = i; j < 3; j++)
            {
                double v = (p[i * 3 + j] - k[i] * px[j]) / Forgetting;
                double w = (p[j * 3 + i] - k[j] * px[i]) / Forgetting;
                p[i * 3 + j] = p[j * 3 + i] = 0.5 * (v + w);
            }
        }

        // Cap each variance at the prior's (a congruence with a diagonal matrix keeps P positive definite).
        for (int i = 0; i < 3; i++)
        {
            double d = p[i * 4];
            if (d > _cap[i])
            {
                double f = Math.Sqrt(_cap[i] / d);
                for (int j = 0; j < 3; j++)
                {
                    p[i * 3 + j] *= f;
                    p[j * 3 + i] *= f;
                }
            }
        }

        Observations++;
    }

    private void Init(double fixedMs, double prefillMs, double decodeMs, double fixedSd, double prefillSd, double decodeSd)
    {
        _theta[0] = fixedMs;
        _theta[1] = prefillMs;
        _theta[2] = decodeMs;
        Array.Clear(_cov);
        _cov[0] = fixedSd * fixedSd;
        _cov[4] = prefillSd * prefillSd;
        _cov[8] = decodeSd * decodeSd;
        _cov[5] = _cov[7] = 0.9 * prefillSd * decodeSd;
        // The cap is never below the unseeded prior's, so that a seed far off (a warm-up on a quiet machine) is still unlearned quickly.
        _cap[0] = Math.Max(_cov[0], PriorFixedSd * PriorFixedSd);
        _cap[1] = Math.Max(_cov[4], PriorPerTokenSd * PriorPerTokenSd);
        _cap[2] = Math.Max(_cov[8], PriorPerTokenSd * PriorPerTokenSd);
    }
}

using Dynamo.Llm.Routing;

namespace Dynamo.Load.Simulation;

/// <summary>
/// What <c>dynamo plan</c> searches for: the latency targets (<c>--ttft-p99</c>, <c>--itl-p99</c>, in ms), the deployments
/// it may try (aggregated, disaggregated at each prefill:decode ratio, each router mode, 1 to <see cref="MaxWorkers"/>
/// workers) and the simulation each is judged by.
/// </summary>
internal sealed record PlanOptions
{
    /// <summary>The defaults (targets still to set).</summary>
    public static PlanOptions Default { get; } = new();

    public double TtftP99Ms { get; init; }

    public double ItlP99Ms { get; init; }

    /// <summary>Workers at most, prefill and decode together (<c>--max-workers</c>).</summary>
    public int MaxWorkers { get; init; } = 32;

    /// <summary>Try aggregated deployments (<c>--shapes</c> agg).</summary>
    public bool Aggregated { get; init; } = true;

    /// <summary>The prefill:decode ratios of the disaggregated deployments to try (<c>--ratios</c>; empty: none).</summary>
    public IReadOnlyList<(int Prefill, int Decode)> Ratios { get; init; } = [(1, 3), (1, 1), (3, 1)];

    /// <summary>Router modes to try (<c>--router-modes</c>).</summary>
    public IReadOnlyList<string> Modes { get; init; } = [RouterModes.Kv, RouterModes.RoundRobin];

    /// <summary>Everything else of each simulation: profile, cost model, routers, disaggregation settings, KV link, seed (the worker counts and modes are the planner's).</summary>
    public SimulationOptions Simulation { get; init; } = SimulationOptions.Default;

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting; returns this.</summary>
    public PlanOptions Validate()
    {
        if (!(TtftP99Ms > 0) || !double.IsFinite(TtftP99Ms))
        {
            throw new ArgumentException($"--ttft-p99 must be a positive number of milliseconds (got {TtftP99Ms})");
        }

        if (!(ItlP99Ms > 0) || !double.IsFinite(ItlP99Ms))
        {
            throw new ArgumentException($"--itl-p99 must be a positive number of milliseconds (got {ItlP99Ms})");
        }

        if (MaxWorkers is < 1 or > 10_000)
        {
            throw new ArgumentException($"--max-workers must be 1..10000 (got {MaxWorkers})");
        }

        if (!Aggregated && Ratios.Count == 0)
        {
            throw new ArgumentException("--shapes: nothing to try (name agg, disagg or both)");
        }

        if (Ratios.Any(r => r.Prefill < 1 || r.Decode < 1))
        {
            throw new ArgumentException("--ratios: each prefill:decode ratio is two positive integers, e.g. 1:3");
        }

        if (!Aggregated && MaxWorkers < 2)
        {
            throw new ArgumentException($"--max-workers: a disaggregated deployment needs at least 2 workers (got {MaxWorkers})");
        }

        (Simulation with { Modes = Modes }).Validate();
        return this;
    }

    /// <summary>Parses <c>--ratios</c>: comma-separated <c>P:D</c>.</summary>
    public static IReadOnlyList<(int Prefill, int Decode)> ParseRatios(string text)
    {
        var ratios = new List<(int, int)>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] pd = part.Split(':');
            if (pd.Length != 2 || !int.TryParse(pd[0], out int p) || !int.TryParse(pd[1], out int d) || p < 1 || d < 1)
            {
                throw new ArgumentException($"--ratios: '{part}' is not a prefill:decode ratio of two positive integers, e.g. 1:3");
            }

            ratios.Add((p, d));
        }

        return ratios;
    }
}

using System.Diagnostics;
using System.Globalization;
using Dynamo.Load.Workloads;

namespace Dynamo.Load.Simulation;

/// <summary>
/// <c>dynamo plan</c>: the smallest deployment (fewest workers, so fewest GPUs of one profile) whose simulated TTFT p99
/// and ITL p99 meet the targets, with every request completed. For each shape (aggregated, then each prefill:decode
/// ratio) and each router mode, a binary search on the worker count, then a look below its answer while fewer still meet
/// (<see cref="SmallestMeetingAsync"/>); the smallest answer so far bounds the later searches (a shape that misses at one worker fewer than the best
/// is not searched further). Every simulation is the real <see cref="Simulator"/> on the same workload; results are
/// kept, so no deployment is simulated twice.
/// </summary>
internal static class CapacityPlanner
{
    /// <summary>Searches with <paramref name="options"/> over <paramref name="conversations"/>; one line of progress per simulation on <paramref name="log"/>.</summary>
    public static async Task<CapacityPlan> RunAsync(PlanOptions options, string workload, IReadOnlyList<LoadConversation> conversations, int concurrency, TextWriter log)
    {
        options.Validate();
        long start = Stopwatch.GetTimestamp();
        var tried = new Dictionary<(string Mode, int Prefill, int Decode), PlanCandidate>();
        PlanCandidate? answer = null;
        var shapes = new List<(int Prefill, int Decode)?>();
        if (options.Aggregated)
        {
            shapes.Add(null);
        }

        shapes.AddRange(options.Ratios.Select(r => ((int, int)?)r));
        foreach ((int Prefill, int Decode)? ratio in shapes)
        {
            foreach (string mode in options.Modes)
            {
                int lo = ratio is null ? 1 : 2;
                int hi = Math.Min(options.MaxWorkers, answer is null ? options.MaxWorkers : answer.Workers - 1);
                if (hi < lo)
                {
                    continue;
                }

                if (await SmallestMeetingAsync(lo, hi, async n => (await EvaluateAsync(n)).Meets) is not int smallest)
                {
                    continue; // fewer workers would do no better
                }

                PlanCandidate found = await EvaluateAsync(smallest);
                if (answer is null || found.Workers < answer.Workers || (found.Workers == answer.Workers && found.Result!.Ttft.P99 < answer.Result!.Ttft.P99))
                {
                    answer = found;
                }

                async Task<PlanCandidate> EvaluateAsync(int workers)
                {
                    (int prefill, int decode) = Split(ratio, workers);
                    if (tried.TryGetValue((mode, prefill, decode), out PlanCandidate? known))
                    {
                        return known;
                    }

                    SimulationOptions simulation = options.Simulation with { Workers = decode, PrefillWorkers = prefill, Modes = [mode] };
                    string shape = ratio is { } x ? string.Create(CultureInfo.InvariantCulture, $"disagg {x.Prefill}:{x.Decode}") : "agg";
                    PlanCandidate candidate;
                    try
                    {
                        SimulationModeResult r = await Simulator.RunAsync(simulation, mode, conversations, concurrency).ConfigureAwait(false);
                        candidate = new PlanCandidate(shape, mode, prefill, decode, r, Miss(options, r));
                        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"plan: {shape} {mode} {prefill}P+{decode}D: TTFT p99 {r.Ttft.P99 * 1000:F0} ms, ITL p99 {r.Itl.P99 * 1000:F1} ms, {(candidate.Meets ? "meets" : candidate.Miss)} ({r.WallTime.TotalSeconds:F1} s)"));
                    }
                    catch (SimulationStalledException e)
                    {
                        candidate = new PlanCandidate(shape, mode, prefill, decode, null, "stalled: " + e.Message);
                        log.WriteLine($"plan: {shape} {mode} {prefill}P+{decode}D: {candidate.Miss}");
                    }

                    tried[(mode, prefill, decode)] = candidate;
                    return candidate;
                }
            }
        }

        PlanCandidate? best = answer ?? tried.Values.OrderBy(c => Score(options, c.Result)).ThenBy(c => c.Workers).FirstOrDefault();
        return new CapacityPlan(options, workload, conversations.Sum(c => c.Turns.Count), concurrency, answer, best, [.. tried.Values], Stopwatch.GetElapsedTime(start));
    }

    /// <summary>
    /// The smallest worker count in [<paramref name="lo"/>, <paramref name="hi"/>] that <paramref name="meets"/> the targets,
    /// or null when <paramref name="hi"/> does not (fewer would do no better). A binary search, then a look below its answer:
    /// latency need not fall with every worker added (ITL p99 is bimodal: it jumps where a long prefill shares a step with
    /// decodes), so while one fewer still meets the search goes on down, and it stops at two misses in a row.
    /// </summary>
    internal static async Task<int?> SmallestMeetingAsync(int lo, int hi, Func<int, Task<bool>> meets)
    {
        int floor = lo;
        if (!await meets(hi).ConfigureAwait(false))
        {
            return null;
        }

        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (await meets(mid).ConfigureAwait(false))
            {
                hi = mid;
            }
            else
            {
                lo = mid + 1;
            }
        }

        for (int n = hi - 1, misses = 0; n >= floor && misses < 2; n--)
        {
            if (await meets(n).ConfigureAwait(false))
            {
                hi = n;
                misses = 0;
            }
            else
            {
                misses++;
            }
        }

        return hi;
    }

    /// <summary>The prefill and decode workers of <paramref name="workers"/> at <paramref name="ratio"/> (null: aggregated, no prefill workers); at least one of each.</summary>
    public static (int Prefill, int Decode) Split((int Prefill, int Decode)? ratio, int workers)
    {
        if (ratio is not { } r)
        {
            return (0, workers);
        }

        int prefill = Math.Clamp((int)Math.Round(workers * (double)r.Prefill / (r.Prefill + r.Decode), MidpointRounding.AwayFromZero), 1, workers - 1);
        return (prefill, workers - prefill);
    }

    /// <summary>Why <paramref name="r"/> misses the targets; null when it meets them (every request completed, both p99s within).</summary>
    private static string? Miss(PlanOptions options, SimulationModeResult r)
    {
        var misses = new List<string>();
        if (r.Rejected > 0 || r.Completed < r.Requests)
        {
            misses.Add(string.Create(CultureInfo.InvariantCulture, $"{r.Requests - r.Completed} of {r.Requests} requests not completed"));
        }

        if (r.Ttft.P99 * 1000 > options.TtftP99Ms)
        {
            misses.Add(string.Create(CultureInfo.InvariantCulture, $"TTFT p99 {r.Ttft.P99 * 1000:F0} > {options.TtftP99Ms} ms"));
        }

        if (r.Itl.P99 * 1000 > options.ItlP99Ms)
        {
            misses.Add(string.Create(CultureInfo.InvariantCulture, $"ITL p99 {r.Itl.P99 * 1000:F1} > {options.ItlP99Ms} ms"));
        }

        return misses.Count == 0 ? null : string.Join("; ", misses);
    }

    /// <summary>How far a result is from the targets: the larger of its p99s over their targets (infinite with requests lost).</summary>
    private static double Score(PlanOptions options, SimulationModeResult? r) =>
        r is null || r.Completed < r.Requests ? double.PositiveInfinity : Math.Max(r.Ttft.P99 * 1000 / options.TtftP99Ms, r.Itl.P99 * 1000 / options.ItlP99Ms);
}

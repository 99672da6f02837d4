using System.Globalization;
using System.Text.Json;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Simulation;

/// <summary>
/// The planner's answer: the smallest deployment that met the targets (null when none did), the closest one found
/// otherwise, and every deployment simulated, with what was simulated and how long the search took.
/// </summary>
internal sealed record CapacityPlan(PlanOptions Options, string Workload, int Requests, int Concurrency, PlanCandidate? Answer, PlanCandidate? Best, IReadOnlyList<PlanCandidate> Tried, TimeSpan WallTime)
{
    /// <summary>GPUs a deployment of <paramref name="workers"/> takes with the profile (0 for a CPU profile).</summary>
    public int Gpus(int workers) => workers * WorkerProfiles.GpusPerWorker(Options.Simulation.Profile);

    /// <summary>The GPUs of <paramref name="workers"/> for the table: a count, or "-" for a CPU profile.</summary>
    private string GpuCell(int workers) => WorkerProfiles.GpusPerWorker(Options.Simulation.Profile) == 0 ? "-" : Gpus(workers).ToString(CultureInfo.InvariantCulture);

    /// <summary>What each simulation replayed, in words.</summary>
    public string Simulated => string.Create(CultureInfo.InvariantCulture,
        $"{Requests} requests of {Workload}, concurrency {(Concurrency == int.MaxValue ? "unbounded" : Concurrency.ToString(CultureInfo.InvariantCulture))}, profile {Options.Simulation.Profile}, seed {Options.Simulation.Seed}");

    /// <summary>The candidates in a Markdown table (in the order tried), then the answer and the run time.</summary>
    public void WriteTable(TextWriter output)
    {
        output.WriteLine();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Targets: TTFT p99 <= {Options.TtftP99Ms} ms, ITL p99 <= {Options.ItlP99Ms} ms, every request completed. Simulated: {Simulated}."));
        output.WriteLine("| shape | router | prefill | decode | GPUs | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | output tok/s | hit rate | remote prefills | result |");
        output.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        foreach (PlanCandidate c in Tried)
        {
            output.WriteLine(Row(c));
        }

        output.WriteLine();
        if (Answer is { } a)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"plan: the smallest deployment that meets the targets: {Describe(a)}"));
        }
        else
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"plan: no deployment of at most {Options.MaxWorkers} workers meets the targets (raise --max-workers or loosen them)"));
            if (Best is { } b)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"plan: the closest found: {Describe(b)} ({b.Miss})"));
            }
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"plan: {Tried.Count} deployments simulated in {WallTime.TotalSeconds:F1} s"));
    }

    /// <summary>One JSON object: the targets, what was simulated, the answer (null when none met them), the closest, and every candidate.</summary>
    public void WriteJson(Stream output)
    {
        JsonReport.Write(output, indented: true, w =>
        {
            w.WriteNumber("ttft_p99_target_ms", Options.TtftP99Ms);
            w.WriteNumber("itl_p99_target_ms", Options.ItlP99Ms);
            w.WriteNumber("max_workers", Options.MaxWorkers);
            w.WriteString("profile", Options.Simulation.Profile);
            w.WriteString("workload", Workload);
            w.WriteNumber("requests", Requests);
            w.WriteString("simulated", Simulated);
            w.WriteBoolean("met", Answer is not null);
            Candidate(w, "answer", Answer);
            Candidate(w, "best", Best);
            w.WriteStartArray("candidates");
            foreach (PlanCandidate c in Tried)
            {
                Candidate(w, null, c);
            }

            w.WriteEndArray();
            w.WriteNumber("wall_seconds", Math.Round(WallTime.TotalSeconds, 2));
        });
    }

    private void Candidate(Utf8JsonWriter w, string? name, PlanCandidate? c)
    {
        if (c is null)
        {
            w.WriteNull(name!);
            return;
        }

        if (name is null)
        {
            w.WriteStartObject();
        }
        else
        {
            w.WriteStartObject(name);
        }

        w.WriteString("shape", c.Shape);
        w.WriteString("router_mode", c.Mode);
        w.WriteNumber("prefill_workers", c.PrefillWorkers);
        w.WriteNumber("decode_workers", c.DecodeWorkers);
        w.WriteNumber("workers", c.Workers);
        w.WriteNumber("gpus", Gpus(c.Workers));
        w.WriteBoolean("meets", c.Meets);
        if (c.Miss is { } miss)
        {
            w.WriteString("miss", miss);
        }

        if (c.Result is not { } r)
        {
            w.WriteEndObject();
            return;
        }

        w.WriteNumber("ttft_p50_ms", Math.Round(r.Ttft.P50 * 1000, 2));
        w.WriteNumber("ttft_p99_ms", Math.Round(r.Ttft.P99 * 1000, 2));
        w.WriteNumber("itl_p50_ms", Math.Round(r.Itl.P50 * 1000, 3));
        w.WriteNumber("itl_p99_ms", Math.Round(r.Itl.P99 * 1000, 3));
        w.WriteNumber("output_tokens_per_second", Math.Round(r.OutputTokensPerSecond, 1));
        w.WriteNumber("requests_per_second", Math.Round(r.RequestsPerSecond, 3));
        w.WriteNumber("prefix_hit_rate", Math.Round(r.HitRate, 4));
        w.WriteNumber("completed", r.Completed);
        w.WriteNumber("rejected", r.Rejected);
        w.WriteNumber("remote_prefills", r.Disaggregation?.RemotePrefills ?? 0);

        w.WriteNumber("wall_seconds", Math.Round(r.WallTime.TotalSeconds, 2));
        w.WriteEndObject();
    }

    private string Row(PlanCandidate c)
    {
        if (c.Result is not { } r)
        {
            return string.Create(CultureInfo.InvariantCulture, $"| {c.Shape} | {c.Mode} | {c.PrefillWorkers} | {c.DecodeWorkers} | {GpuCell(c.Workers)} | - | - | - | - | - | - | - | stalled |");
        }

        string remote = r.Disaggregation is { } d ? string.Create(CultureInfo.InvariantCulture, $"{d.RemotePrefills} of {r.Requests}") : "-";
        return string.Create(CultureInfo.InvariantCulture,
            $"| {c.Shape} | {c.Mode} | {c.PrefillWorkers} | {c.DecodeWorkers} | {GpuCell(c.Workers)} | {r.Ttft.P50 * 1000:F0} | {r.Ttft.P99 * 1000:F0} | {r.Itl.P50 * 1000:F1} | {r.Itl.P99 * 1000:F1} | {r.OutputTokensPerSecond:F0} | {r.HitRate:P1} | {remote} | {(c.Meets ? "meets" : c.Miss)} |");
    }

    private string Describe(PlanCandidate c)
    {
        string shape = c.PrefillWorkers == 0 ? $"{c.DecodeWorkers} aggregated worker{(c.DecodeWorkers == 1 ? "" : "s")}" : $"{c.PrefillWorkers} prefill + {c.DecodeWorkers} decode workers";
        if (c.Result is not { } r)
        {
            return $"{shape}, {c.Mode} routing: stalled";
        }

        return string.Create(CultureInfo.InvariantCulture,
            $"{shape} ({(Gpus(c.Workers) > 0 ? $"{Gpus(c.Workers)} GPUs of " : "")}{Options.Simulation.Profile}), {c.Mode} routing: TTFT p50 {r.Ttft.P50 * 1000:F0} ms, p99 {r.Ttft.P99 * 1000:F0} ms; ITL p50 {r.Itl.P50 * 1000:F1} ms, p99 {r.Itl.P99 * 1000:F1} ms; {r.OutputTokensPerSecond:F0} output tok/s, {r.RequestsPerSecond:F2} req/s; prefix hit rate {r.HitRate:P1}");
    }
}

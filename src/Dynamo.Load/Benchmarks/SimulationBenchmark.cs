using System.Diagnostics;
using System.Globalization;
using Dynamo.Load.Reports;
using Dynamo.Load.Simulation;
using Dynamo.Load.Workloads;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo simulate</c> (and <c>bench routing --virtual-time</c>): the same workload through each router mode in turn,
/// each on a fresh set of simulated workers in virtual time (<see cref="Simulator"/>); the figures side by side, with the
/// wall time each mode's simulation took.
/// </summary>
internal static class SimulationBenchmark
{
    /// <summary>A whole run: the settings, the workload and its request count, each mode's figures and the total wall time.</summary>
    public sealed record Outcome(SimulationOptions Options, string Workload, int Requests, int Concurrency, IReadOnlyList<SimulationModeResult> Modes, TimeSpan BuildTime, TimeSpan WallTime)
    {
        /// <summary>One JSON object (indented): the setup, then one object per mode.</summary>
        public void WriteJson(Stream output)
        {
            JsonReport.Write(output, indented: true, w =>
            {
                w.WriteNumber("workers", Options.Workers);
                w.WriteNumber("prefill_workers", Options.PrefillWorkers);
                if (Options.PrefillWorkers > 0)
                {
                    w.WriteNumber("max_local_prefill_length", Options.Disaggregation.MaxLocalPrefillLength);
                    w.WriteNumber("max_prefill_queue_size", Options.Disaggregation.MaxPrefillQueueSize);
                    w.WriteBoolean("conditional_disagg", Options.Disaggregation.ConditionalDisagg);
                    w.WriteNumber("kv_bytes_per_token", Options.KvLink.BytesPerToken);
                    w.WriteNumber("kv_transfer_gbps", Options.KvLink.Gbps);
                }

                w.WriteString("profile", Options.Profile);
                w.WriteString("workload", Workload);
                w.WriteNumber("requests", Requests);
                w.WriteNumber("concurrency", Concurrency);
                w.WriteNumber("num_gpu_blocks", Options.Mocker.NumGpuBlocks);
                w.WriteNumber("kv_event_delay_ms", Options.KvEventDelay.TotalMilliseconds);
                w.WriteNumber("kv_event_loss", Options.Mocker.KvEventLoss);
                w.WriteNumber("router_resync_accuracy", Options.KvRouter.ResyncAccuracy);
                w.WriteNumber("seed", Options.Seed);
                w.WriteNumber("workload_build_seconds", Math.Round(BuildTime.TotalSeconds, 2));
                w.WriteNumber("wall_seconds", Math.Round(WallTime.TotalSeconds, 2));
                w.WriteStartArray("modes");
                foreach (SimulationModeResult r in Modes)
                {
                    w.WriteStartObject();
                    w.WriteString("mode", r.Mode);
                    w.WriteNumber("requests", r.Requests);
                    w.WriteNumber("completed", r.Completed);
                    w.WriteNumber("rejected", r.Rejected);
                    Latency(w, "ttft", r.Ttft, 1000);
                    Latency(w, "itl", r.Itl, 1000);
                    Latency(w, "e2e", r.EndToEnd, 1000);
                    w.WriteNumber("output_tokens_per_second", Math.Round(r.OutputTokensPerSecond, 1));
                    w.WriteNumber("requests_per_second", Math.Round(r.RequestsPerSecond, 3));
                    w.WriteNumber("prefix_hit_rate", Math.Round(r.HitRate, 4));
                    w.WriteNumber("preemptions", r.Preemptions);
                    SpreadOf(w, "requests_per_worker", r.RequestsPerWorker);
                    SpreadOf(w, "prompt_tokens_per_worker", r.PromptTokensPerWorker);
                    w.WriteNumber("starved_workers", r.StarvedWorkers);
                    w.WriteStartObject("follow_ups");
                    w.WriteNumber("count", r.FollowUps.Count);
                    w.WriteNumber("on_prefix_holder", r.FollowUps.OnPrefixHolder);
                    w.WriteNumber("on_prefix_holder_share", Math.Round(r.FollowUps.OnPrefixHolderShare, 4));
                    w.WriteNumber("holder_kept_share", Math.Round(r.FollowUps.HolderKeptShare, 4));
                    w.WriteNumber("shared_prefix_blocks", r.FollowUps.SharedBlocks);
                    w.WriteNumber("gap_p50_seconds", Math.Round(r.FollowUps.Gap.P50, 3));
                    w.WriteEndObject();
                    w.WriteNumber("decision_p50_us", Math.Round(r.DecisionMicros.P50, 1));
                    w.WriteNumber("decision_p99_us", Math.Round(r.DecisionMicros.P99, 1));
                    w.WriteNumber("decision_mean_us", Math.Round(r.DecisionMicros.Mean, 1));
                    w.WriteNumber("decision_p99_uninterrupted_us", Math.Round(r.DecisionMicrosUninterrupted.P99, 1));
                    w.WriteNumber("decisions_interrupted", r.DecisionsInterrupted);
                    w.WriteNumber("kv_events", r.KvEvents);
                    w.WriteNumber("kv_events_lost", r.KvEventsLost);
                    if (r.CachedTokenPredictionError is double error)
                    {
                        w.WriteNumber("cached_token_prediction_error", Math.Round(error, 4));
                    }

                    w.WriteNumber("accuracy_resyncs", r.AccuracyResyncs);
                    w.WriteNumber("kv_events_per_virtual_second", Math.Round(r.KvEventsPerVirtualSecond, 1));
                    w.WriteNumber("kv_events_per_wall_second", Math.Round(r.KvEventsPerWallSecond, 1));
                    w.WriteNumber("virtual_seconds", Math.Round(r.VirtualTime.TotalSeconds, 3));
                    w.WriteNumber("wall_seconds", Math.Round(r.WallTime.TotalSeconds, 2));
                    w.WriteNumber("events", r.Events);
                    if (r.Disaggregation is { } d)
                    {
                        WriteDisaggregation(w, d);
                    }

                    w.WriteEndObject();
                }

                w.WriteEndArray();
            });
        }

        /// <summary>The split of a disaggregated run: decisions by reason, prefills that did run remotely, fallbacks, the transfers.</summary>
        internal static void WriteDisaggregation(System.Text.Json.Utf8JsonWriter w, SimulationDisaggregation d)
        {
            w.WriteStartObject("disaggregation");
            w.WriteNumber("remote_decisions", d.RemoteDecisions);
            w.WriteNumber("local_decisions", d.LocalDecisions);
            w.WriteNumber("remote_prefills", d.RemotePrefills);
            w.WriteStartObject("decisions");
            foreach ((bool remote, string reason, long count) in d.Decisions)
            {
                w.WriteNumber($"{(remote ? "remote" : "local")}:{reason}", count);
            }

            w.WriteEndObject();
            w.WriteStartObject("fallbacks");
            foreach ((string reason, long count) in d.Fallbacks)
            {
                w.WriteNumber(reason, count);
            }

            w.WriteEndObject();
            w.WriteNumber("transfer_p50_ms", Math.Round(d.TransferMs.P50, 3));
            w.WriteNumber("transfer_p99_ms", Math.Round(d.TransferMs.P99, 3));
            w.WriteNumber("transfer_bytes", d.TransferBytes);
            SpreadOf(w, "prefills_per_prefill_worker", d.PrefillRequestsPerWorker);
            w.WriteEndObject();
        }

        private static void Latency(System.Text.Json.Utf8JsonWriter w, string name, LatencySummary s, double scale)
        {
            w.WriteNumber($"{name}_mean_ms", Math.Round(s.Mean * scale, 2));
            w.WriteNumber($"{name}_p50_ms", Math.Round(s.P50 * scale, 2));
            w.WriteNumber($"{name}_p99_ms", Math.Round(s.P99 * scale, 2));
        }

        private static void SpreadOf(System.Text.Json.Utf8JsonWriter w, string name, Spread s)
        {
            w.WriteStartObject(name);
            w.WriteNumber("min", s.Min);
            w.WriteNumber("max", s.Max);
            w.WriteNumber("mean", Math.Round(s.Mean, 2));
            w.WriteNumber("stddev", Math.Round(s.StdDev, 2));
            w.WriteEndObject();
        }

        /// <summary>The tables: the setup on one line, then latencies and routing, one Markdown row per mode.</summary>
        public void WriteTable(TextWriter output)
        {
            output.WriteLine();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{(Options.PrefillWorkers > 0 ? $"{Options.Workers} decode + {Options.PrefillWorkers} prefill" : Options.Workers)} simulated workers (profile {Options.Profile}: step {Options.Mocker.StepMs} ms + {Options.Mocker.PrefillMsPerToken} ms/prefill token + {Options.Mocker.DecodeMsPerSequence} ms/decoding sequence, {Options.Mocker.NumGpuBlocks} KV blocks of {Options.Mocker.BlockSize}), workload {Workload}, {Requests} requests, concurrency {(Concurrency == int.MaxValue ? "unbounded" : Concurrency.ToString(CultureInfo.InvariantCulture))}, KV event delay {Options.KvEventDelay.TotalMilliseconds} ms, seed {Options.Seed}"));
            output.WriteLine("| mode | completed | rejected | TTFT mean ms | TTFT p50 ms | TTFT p99 ms | ITL mean ms | ITL p50 ms | ITL p99 ms | output tok/s | req/s | prefix hit rate | preemptions |");
            output.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (SimulationModeResult r in Modes)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Mode} | {r.Completed} | {r.Rejected} | {r.Ttft.Mean * 1000:F1} | {r.Ttft.P50 * 1000:F1} | {r.Ttft.P99 * 1000:F1} | {r.Itl.Mean * 1000:F2} | {r.Itl.P50 * 1000:F2} | {r.Itl.P99 * 1000:F2} | {r.OutputTokensPerSecond:F0} | {r.RequestsPerSecond:F2} | {r.HitRate:P1} | {r.Preemptions} |"));
            }

            output.WriteLine();
            output.WriteLine("| mode | requests/worker min-max (sd) | prompt tokens/worker min-max (sd) | starved workers | decision p50 us | decision p99 us | p99 uninterrupted us (interrupted: GC or CPU wait) | KV events | KV events/s virtual | KV events/s wall | virtual s | wall s |");
            output.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (SimulationModeResult r in Modes)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Mode} | {r.RequestsPerWorker.Min:F0}-{r.RequestsPerWorker.Max:F0} ({r.RequestsPerWorker.StdDev:F1}) | {r.PromptTokensPerWorker.Min:F0}-{r.PromptTokensPerWorker.Max:F0} ({r.PromptTokensPerWorker.StdDev:F0}) | {r.StarvedWorkers} | {r.DecisionMicros.P50:F1} | {r.DecisionMicros.P99:F1} | {r.DecisionMicrosUninterrupted.P99:F1} ({r.DecisionsInterrupted}) | {r.KvEvents} | {r.KvEventsPerVirtualSecond:F0} | {r.KvEventsPerWallSecond:F0} | {r.VirtualTime.TotalSeconds:F1} | {r.WallTime.TotalSeconds:F1} |"));
            }

            output.WriteLine();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Routing accuracy: KV events lost {Options.Mocker.KvEventLoss:P0} (--kv-event-loss), resync below {Options.KvRouter.ResyncAccuracy:P0} over {Options.KvRouter.AccuracyWindow} requests (--router-resync-accuracy, 0: off)"));
            output.WriteLine("| mode | cached-token prediction error | accuracy resyncs | KV events lost |");
            output.WriteLine("| --- | ---: | ---: | ---: |");
            foreach (SimulationModeResult r in Modes)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Mode} | {(r.CachedTokenPredictionError is double error ? error.ToString("P1", CultureInfo.InvariantCulture) : "-")} | {r.AccuracyResyncs} | {r.KvEventsLost} |"));
            }

            output.WriteLine();
            output.WriteLine("| mode | follow-up turns | routed to their prefix holder | previous turn's worker still held it | gap between turns p50 s | prefix shared by all, blocks |");
            output.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
            foreach (SimulationModeResult r in Modes)
            {
                FollowUpSummary f = r.FollowUps;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Mode} | {f.Count} | {f.OnPrefixHolderShare:P1} | {f.HolderKeptShare:P1} | {f.Gap.P50:F1} | {f.SharedBlocks} |"));
            }

            if (Options.PrefillWorkers > 0)
            {
                output.WriteLine();
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"Disaggregation: conditional {Options.Disaggregation.ConditionalDisagg}, max local prefill {Options.Disaggregation.MaxLocalPrefillLength} tokens, max prefill queue {Options.Disaggregation.MaxPrefillQueueSize}; KV {Options.KvLink.BytesPerToken:N0} bytes a token over {Options.KvLink.Gbps} Gbit/s + {Options.KvLink.Latency.TotalMicroseconds} us"));
                output.WriteLine("| mode | remote decisions | local decisions | decisions by reason | remote prefills (imported) | fallbacks | transfer p50 ms | transfer p99 ms | KV GB moved | prefills/prefill worker min-max |");
                output.WriteLine("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |");
                foreach (SimulationModeResult r in Modes)
                {
                    if (r.Disaggregation is not { } d)
                    {
                        continue;
                    }

                    string reasons = string.Join(", ", d.Decisions.Select(x => $"{(x.Remote ? "remote" : "local")} {x.Reason} {x.Count}"));
                    string fallbacks = d.Fallbacks.Count == 0 ? "none" : string.Join(", ", d.Fallbacks.Select(x => $"{x.Reason} {x.Count}"));
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {r.Mode} | {d.RemoteDecisions} | {d.LocalDecisions} | {reasons} | {d.RemotePrefills} | {fallbacks} | {d.TransferMs.P50:F2} | {d.TransferMs.P99:F2} | {d.TransferBytes / 1e9:F2} | {d.PrefillRequestsPerWorker.Min:F0}-{d.PrefillRequestsPerWorker.Max:F0} |"));
                }
            }

            output.WriteLine();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"simulate: wall time {WallTime.TotalSeconds:F1} s (workload {BuildTime.TotalSeconds:F1} s, modes {string.Join(", ", Modes.Select(m => $"{m.Mode} {m.WallTime.TotalSeconds:F1} s"))})"));
        }
    }

    /// <summary>The conversations a simulation replays: a trace's prompts in their token-id form (<c>trace-tokens:</c>: the same words, one token each).</summary>
    public static IReadOnlyList<LoadConversation> Build(IWorkload workload, LoadOptions load)
    {
        IWorkload replayed = workload is TraceWorkload { TokenIds: false } text ? new TraceWorkload(text.Path, tokenIds: true) : workload;
        return replayed.Build(load);
    }

    /// <summary>
    /// Builds <paramref name="workload"/> once and runs it through every mode of <paramref name="options"/>, at most
    /// <paramref name="concurrency"/> conversations at once (int.MaxValue: unbounded, every request at its arrival). A
    /// trace's prompts are its token-id form (<c>trace-tokens:</c>: the same words, one token each).
    /// </summary>
    public static async Task<Outcome> RunAsync(SimulationOptions options, IWorkload workload, LoadOptions load, int concurrency, TextWriter log)
    {
        options.Validate();
        long start = Stopwatch.GetTimestamp();
        IReadOnlyList<LoadConversation> conversations = Build(workload, load);
        int requests = conversations.Sum(c => c.Turns.Count);
        TimeSpan built = Stopwatch.GetElapsedTime(start);
        var results = new List<SimulationModeResult>();
        foreach (string mode in options.Modes)
        {
            log.WriteLine($"simulate: {mode}: {requests} requests of {workload.Name} on {(options.PrefillWorkers > 0 ? $"{options.Workers} decode + {options.PrefillWorkers} prefill" : options.Workers)} simulated workers...");
            SimulationModeResult r = await Simulator.RunAsync(options, mode, conversations, concurrency).ConfigureAwait(false);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"simulate: {mode}: TTFT mean {r.Ttft.Mean * 1000:F1} ms, hit rate {r.HitRate:P1}, {r.VirtualTime.TotalSeconds:F0} s simulated in {r.WallTime.TotalSeconds:F1} s"));
            results.Add(r);
        }

        return new Outcome(options, workload.Name, requests, concurrency, results, built, Stopwatch.GetElapsedTime(start));
    }
}

using System.Globalization;
using System.Text.Json;
using Dynamo.Frontend;
using Dynamo.Llm.Disaggregation;
using Dynamo.Load.Client;
using Dynamo.Load.Reports;
using Dynamo.Load.Workloads;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench disagg</c>: disaggregated serving (prefill workers beside decode workers, the KV moved between
/// them) against aggregated serving on the same number of workers, under the same open-loop load of long and
/// short prompts. For each deployment: its workers (<see cref="IDisaggDeployer"/>), the HTTP frontend in this
/// process on their infrastructure, a wait until the frontend sees every worker, an untimed warm-up (short
/// prompts and prompts just over max-local-prefill-length; for the disaggregated one, until a remote prefill has
/// happened), then the workload through bench serve's client: TTFT and ITL, output tok/s, and the workers'
/// remote prefills, local fallbacks and KV transferred during the run. Then the KV transfer of one long prompt's
/// KV against a memory copy and a plain TCP stream (<see cref="TransferBenchmark"/>), and the ratios against
/// the targets.
/// </summary>
internal static class DisaggBenchmark
{
    /// <summary>How long a deployment may take to become ready: every worker seen by the frontend, the warm-up, the first remote prefill.</summary>
    public static readonly TimeSpan ReadyTimeout = TimeSpan.FromMinutes(5);

    /// <summary>Target: decode ITL p99 under disaggregation at least this many times lower than aggregated.</summary>
    public const double ItlTarget = 2;

    /// <summary>Target: the KV transfer at least this fraction of a plain loopback TCP stream.</summary>
    public const double TransferTarget = 0.8;

    /// <summary>What the run compares, for the report's header.</summary>
    /// <param name="Engine">"dynamo" or "mocker".</param>
    /// <param name="Model">The served model: its path and shape, or the mocker's cost model.</param>
    /// <param name="Workers">How the workers run (<see cref="IDisaggDeployer.Description"/>).</param>
    /// <param name="Infrastructure">Where NATS and etcd come from, or "in-process".</param>
    /// <param name="Settings">The disaggregation settings of the disaggregated deployment.</param>
    /// <param name="KvBytesPerToken">KV bytes per prompt token (the transfer section's payload size).</param>
    /// <param name="Link">The simulated link, described; null without one.</param>
    public sealed record Setup(string Engine, string Model, string Workers, string Infrastructure, DisaggregationSettings Settings, long KvBytesPerToken, string? Link);

    /// <summary>One deployment's figures.</summary>
    public sealed record DeploymentResult(DeploymentShape Shape, LoadReport Report, LatencySummary LongTtft, LatencySummary ShortTtft, DisaggCounters Counters)
    {
        /// <summary>Requests whose KV came from a prefill worker.</summary>
        public long RemotePrefills => Counters.RemotePrefills;

        /// <summary>The other measured requests: prefilled by the worker that decoded them.</summary>
        public long LocalPrefills => Report.Requests - RemotePrefills;

        /// <summary>Rejected (HTTP 429/503) and failed requests.</summary>
        public int Failed => Report.Rejected + Report.Errors;
    }

    /// <summary>A whole run: the setup, the workload, each deployment's figures, the transfer section.</summary>
    public sealed record Outcome(Setup Setup, string Cpu, LoadOptions Options, MixedLengthWorkload Workload, IReadOnlyList<DeploymentResult> Deployments, TransferBenchmark.Row? Transfer)
    {
        public DeploymentResult? Aggregated => Deployments.FirstOrDefault(d => !d.Shape.IsDisaggregated);

        public DeploymentResult? Disaggregated => Deployments.FirstOrDefault(d => d.Shape.IsDisaggregated);

        /// <summary>ITL p99 aggregated / disaggregated: how many times lower disaggregation makes it (null without both).</summary>
        public double? ItlP99Gain => Aggregated is { } a && Disaggregated is { } d && d.Report.Itl.P99 > 0 ? a.Report.Itl.P99 / d.Report.Itl.P99 : null;

        /// <summary>Output tok/s disaggregated / aggregated (null without both).</summary>
        public double? ThroughputRatio => Aggregated is { } a && Disaggregated is { } d && a.Report.OutputTokensPerSecond > 0 ? d.Report.OutputTokensPerSecond / a.Report.OutputTokensPerSecond : null;

        /// <summary>TTFT p50 aggregated / disaggregated (null without both).</summary>
        public double? TtftP50Gain => Aggregated is { } a && Disaggregated is { } d && d.Report.Ttft.P50 > 0 ? a.Report.Ttft.P50 / d.Report.Ttft.P50 : null;

        /// <summary>The tables: the setup, one Markdown row per deployment, TTFT by prompt length, the transfer and the ratios.</summary>
        public void WriteTable(TextWriter output)
        {
            int longCount = Workload.LongCount(Options.NumPrompts);
            output.WriteLine();
            output.WriteLine($"bench disagg: engine {Setup.Engine}, model {Setup.Model}");
            output.WriteLine($"workers: {Setup.Workers}; {Setup.Infrastructure}");
            output.WriteLine($"cpu: {Cpu}");
            output.WriteLine(Invariant($"workload: {Options.NumPrompts} requests, Poisson arrivals at {Options.RequestRate:0.###}/s (seed {Options.Seed}): {longCount} long prompts of {Workload.LongTokens} tokens, {Options.NumPrompts - longCount} short of {Workload.ShortTokens}, {Options.OutputTokens} output tokens each (ignore_eos)"));
            output.WriteLine(Invariant($"disaggregation: max-local-prefill-length {Setup.Settings.MaxLocalPrefillLength}, max-prefill-queue-size {Setup.Settings.MaxPrefillQueueSize}, conditional {Setup.Settings.ConditionalDisagg.ToString().ToLowerInvariant()}{(Setup.Link is null ? "" : $"; simulated link: {Setup.Link}")}"));
            output.WriteLine();
            output.WriteLine("| deployment | workers | completed | failed | TTFT mean ms | TTFT p50 ms | TTFT p99 ms | ITL mean ms | ITL p50 ms | ITL p99 ms | output tok/s | remote prefills | local prefills | KV MB transferred | transfer mean ms |");
            output.WriteLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (DeploymentResult d in Deployments)
            {
                LoadReport r = d.Report;
                output.WriteLine(Invariant(
                    $"| {d.Shape.Name} | {d.Shape.Describe()} | {r.Completed} | {d.Failed} | {Ms(r.Ttft.Mean)} | {Ms(r.Ttft.P50)} | {Ms(r.Ttft.P99)} | {Ms(r.Itl.Mean)} | {Ms(r.Itl.P50)} | {Ms(r.Itl.P99)} | {r.OutputTokensPerSecond:F1} | {d.RemotePrefills} | {d.LocalPrefills} | {d.Counters.TransferBytes / 1e6:F1} | {(d.RemotePrefills > 0 ? Ms(d.Counters.MeanTransferSeconds) : "-")} |"));
            }

            output.WriteLine();
            output.WriteLine("TTFT by prompt length, ms (mean / p50 / p99):");
            foreach (DeploymentResult d in Deployments)
            {
                output.WriteLine(Invariant($"  {d.Shape.Name}: long {Ms(d.LongTtft.Mean)} / {Ms(d.LongTtft.P50)} / {Ms(d.LongTtft.P99)}, short {Ms(d.ShortTtft.Mean)} / {Ms(d.ShortTtft.P50)} / {Ms(d.ShortTtft.P99)}"));
            }

            if (Disaggregated is { } dis)
            {
                DisaggCounters c = dis.Counters;
                output.WriteLine(Invariant($"disaggregated: routing decisions {Describe(c.Decisions)}; decode-side fallbacks {Describe(c.Fallbacks)}; prefills served {c.PrefillsServed}; ask-to-KV-arrival mean {Ms(c.MeanRemotePrefillSeconds)} ms"));
            }

            output.WriteLine();
            if (Transfer is { } t)
            {
                output.WriteLine(Invariant(
                    $"KV transfer of one long prompt's KV ({Workload.LongTokens - 1} tokens x {Setup.KvBytesPerToken:N0} bytes = {t.SizeBytes / 1e6:F1} MB) on loopback, medians: memory copy {t.MemcpyGbps:F2} GB/s, plain TCP {t.TcpGbps:F2} GB/s, KvTransfer {t.TransferGbps:F2} GB/s into fresh buffers as the workers receive = {t.Ratio:P0} of TCP (target >= {TransferTarget:P0}: {Verdict(t.Ratio >= TransferTarget)}), {t.PooledGbps:F2} GB/s into pooled buffers = {t.PooledRatio:P0}"));
            }

            if (Disaggregated is { RemotePrefills: > 0 } served && Setup.Link is null)
            {
                output.WriteLine(Invariant($"KV received in serving (disaggregated): {served.Counters.TransferBytes / 1e6:F1} MB in {served.RemotePrefills} transfers, {served.Counters.TransferGbps:F2} GB/s over the senders' transfer time"));
            }

            if (ItlP99Gain is double gain)
            {
                output.WriteLine(Invariant($"ratios: ITL p99 aggregated / disaggregated {gain:F2} (target >= {ItlTarget:0}: {Verdict(gain >= ItlTarget)}); output tok/s disaggregated / aggregated {ThroughputRatio:F2}; TTFT p50 aggregated / disaggregated {TtftP50Gain:F2}"));
            }
        }

        /// <summary>One JSON object (indented): the setup and workload, one object per deployment, the transfer, the ratios.</summary>
        public void WriteJson(Stream output)
        {
            JsonReport.Write(output, indented: true, w =>
            {
                w.WriteString("engine", Setup.Engine);
                w.WriteString("model", Setup.Model);
                w.WriteString("workers", Setup.Workers);
                w.WriteString("infrastructure", Setup.Infrastructure);
                w.WriteString("cpu", Cpu);
                w.WriteStartObject("workload");
                w.WriteNumber("requests", Options.NumPrompts);
                w.WriteNumber("request_rate", Options.RequestRate);
                w.WriteNumber("seed", Options.Seed);
                w.WriteNumber("long_tokens", Workload.LongTokens);
                w.WriteNumber("short_tokens", Workload.ShortTokens);
                w.WriteNumber("long_requests", Workload.LongCount(Options.NumPrompts));
                w.WriteNumber("output_tokens", Options.OutputTokens);
                w.WriteEndObject();
                w.WriteStartObject("disaggregation");
                w.WriteBoolean("conditional_disagg", Setup.Settings.ConditionalDisagg);
                w.WriteNumber("max_local_prefill_length", Setup.Settings.MaxLocalPrefillLength);
                w.WriteNumber("max_prefill_queue_size", Setup.Settings.MaxPrefillQueueSize);
                w.WriteEndObject();
                w.WriteNumber("kv_bytes_per_token", Setup.KvBytesPerToken);
                if (Setup.Link is null)
                {
                    w.WriteNull("simulated_link");
                }
                else
                {
                    w.WriteString("simulated_link", Setup.Link);
                }

                w.WriteStartArray("deployments");
                foreach (DeploymentResult d in Deployments)
                {
                    WriteDeployment(w, d);
                }

                w.WriteEndArray();
                if (Transfer is { } t)
                {
                    w.WriteStartObject("transfer");
                    t.WriteMembers(w);
                    w.WriteEndObject();
                }
                else
                {
                    w.WriteNull("transfer");
                }

                w.WriteStartObject("ratios");
                WriteNullable(w, "itl_p99_aggregated_over_disaggregated", ItlP99Gain);
                WriteNullable(w, "output_tokens_per_second_disaggregated_over_aggregated", ThroughputRatio);
                WriteNullable(w, "ttft_p50_aggregated_over_disaggregated", TtftP50Gain);
                WriteNullable(w, "transfer_vs_tcp", Transfer?.Ratio);
                w.WriteEndObject();
            });
        }

        private static void WriteDeployment(Utf8JsonWriter w, DeploymentResult d)
        {
            LoadReport r = d.Report;
            DisaggCounters c = d.Counters;
            w.WriteStartObject();
            w.WriteString("deployment", d.Shape.Name);
            w.WriteString("workers", d.Shape.Describe());
            w.WriteNumber("prefill_workers", d.Shape.PrefillWorkers);
            w.WriteNumber("decode_workers", d.Shape.IsDisaggregated ? d.Shape.Workers : 0);
            w.WriteNumber("aggregated_workers", d.Shape.IsDisaggregated ? 0 : d.Shape.Workers);
            w.WriteNumber("requests", r.Requests);
            w.WriteNumber("completed", r.Completed);
            w.WriteNumber("failed", d.Failed);
            w.WriteNumber("duration_s", Math.Round(r.DurationSeconds, 3));
            w.WriteNumber("output_tokens", r.OutputTokens);
            w.WriteNumber("output_tokens_per_second", Math.Round(r.OutputTokensPerSecond, 2));
            w.WriteNumber("requests_per_second", Math.Round(r.RequestsPerSecond, 3));
            LoadReport.WriteSummary(w, "ttft_ms", r.Ttft);
            LoadReport.WriteSummary(w, "itl_ms", r.Itl);
            LoadReport.WriteSummary(w, "ttft_long_ms", d.LongTtft);
            LoadReport.WriteSummary(w, "ttft_short_ms", d.ShortTtft);
            w.WriteNumber("remote_prefills", d.RemotePrefills);
            w.WriteNumber("local_prefills", d.LocalPrefills);
            w.WriteNumber("prefills_served", c.PrefillsServed);
            Counts(w, "decisions", c.Decisions);
            Counts(w, "fallbacks", c.Fallbacks);
            w.WriteNumber("transfer_bytes", c.TransferBytes);
            w.WriteNumber("transfer_mean_ms", Math.Round(c.MeanTransferSeconds * 1000, 3));
            w.WriteNumber("remote_prefill_mean_ms", Math.Round(c.MeanRemotePrefillSeconds * 1000, 3));
            w.WriteNumber("transfer_gbps", Math.Round(c.TransferGbps, 3));
            w.WriteStartArray("error_messages");
            foreach (string m in r.ErrorMessages)
            {
                w.WriteStringValue(m);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        private static void Counts(Utf8JsonWriter w, string name, IReadOnlyDictionary<string, long> counts)
        {
            w.WriteStartObject(name);
            foreach ((string key, long count) in counts.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                w.WriteNumber(key, count);
            }

            w.WriteEndObject();
        }

        private static void WriteNullable(Utf8JsonWriter w, string name, double? value)
        {
            if (value is double v)
            {
                w.WriteNumber(name, Math.Round(v, 3));
            }
            else
            {
                w.WriteNull(name);
            }
        }

        private static string Describe(IReadOnlyDictionary<string, long> counts) =>
            counts.Count == 0 ? "none" : string.Join(", ", counts.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => Invariant($"{p.Key} {p.Value}")));

        private static string Verdict(bool met) => met ? "met" : "not met";

        private static string Ms(double seconds) => Invariant($"{seconds * 1000:F1}");
    }

    /// <summary>
    /// Runs <paramref name="workload"/> (open loop at <see cref="LoadOptions.RequestRate"/>) on a fresh deployment of
    /// each of <paramref name="shapes"/> in turn, the same requests at the same times, then the transfer section
    /// (<paramref name="transferRepetitions"/> 0 leaves it out). Progress lines go to <paramref name="log"/>.
    /// </summary>
    public static async Task<Outcome> RunAsync(IDisaggDeployer deployer, Setup setup, IReadOnlyList<DeploymentShape> shapes, MixedLengthWorkload workload, LoadOptions options,
        FrontendOptions frontend, int transferRepetitions, bool progress, TextWriter log, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<LoadConversation> conversations = new PoissonArrivals(workload, options.RequestRate).Build(options);
        var results = new List<DeploymentResult>();
        foreach (DeploymentShape shape in shapes)
        {
            log.WriteLine($"bench disagg: {shape.Name}: starting {shape.Describe()} ({deployer.Description})...");
            await using DisaggWorkers workers = await deployer.StartAsync(shape, cancellationToken).ConfigureAwait(false);
            FrontendOptions own = (frontend with { Host = "127.0.0.1", HttpPort = 0, Processing = frontend.Processing with { Namespace = workers.Namespace } }).Validate();
            await using FrontendServer server = await FrontendServer.StartAsync(workers.Runtime, own, NullLoggerFactory.Instance, cancellationToken).ConfigureAwait(false);
            using var http = new HttpClient { BaseAddress = server.BaseAddress };
            using (var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                ready.CancelAfter(ReadyTimeout);
                try
                {
                    await server.WaitForModelAsync(workers.Model, ready.Token).ConfigureAwait(false);
                    await WaitForWorkersAsync(http, workers.Model, shape.Total, ready.Token).ConfigureAwait(false);
                    await WarmUpAsync(workers, shape, setup.Settings, workload, options with { Url = server.BaseAddress.ToString(), Model = workers.Model }, log, ready.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    throw new IOException($"bench disagg: the {shape.Name} deployment was not ready (every worker seen by the frontend, warmed up{(shape.IsDisaggregated ? ", a remote prefill done" : "")}) within {ReadyTimeout.TotalMinutes:0} minutes");
                }
            }

            DisaggCounters before = await CountersAsync(workers, http, cancellationToken).ConfigureAwait(false);
            log.WriteLine($"bench disagg: {shape.Name}: {conversations.Count} requests...");
            LoadOptions measured = options with { Url = server.BaseAddress.ToString(), Model = workers.Model };
            LoadProgress? bar = progress ? new LoadProgress(log, conversations.Count, TimeProvider.System, TimeSpan.FromMilliseconds(250)) : null;
            List<RequestResult> requests;
            double seconds;
            bool interrupted;
            try
            {
                var runner = new LoadRunner(measured) { OnCompleted = bar is null ? null : bar.Completed };
                (requests, seconds, interrupted) = await runner.RunAsync(conversations, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                if (bar is not null)
                {
                    await bar.DisposeAsync().ConfigureAwait(false);
                }
            }

            DisaggCounters counters = (await CountersAsync(workers, http, cancellationToken).ConfigureAwait(false)).Since(before);
            int split = (workload.LongTokens + workload.ShortTokens) / 2;
            RequestResult[] ok = [.. requests.Where(r => r.Outcome == RequestOutcome.Ok && r.Ttft is not null)];
            var result = new DeploymentResult(
                shape,
                LoadReport.From(measured, workload.Name, requests, seconds, interrupted),
                LatencySummary.Of(ok.Where(r => r.PromptTokens >= split).Select(r => r.Ttft!.Value)),
                LatencySummary.Of(ok.Where(r => r.PromptTokens < split).Select(r => r.Ttft!.Value)),
                counters);
            results.Add(result);
            log.WriteLine(Invariant($"bench disagg: {shape.Name}: {result.Report.Completed} of {result.Report.Requests} completed, ITL p99 {result.Report.Itl.P99 * 1000:F1} ms, TTFT p50 {result.Report.Ttft.P50 * 1000:F1} ms, {result.Report.OutputTokensPerSecond:F1} output tok/s, {result.RemotePrefills} remote prefills"));
            if (interrupted)
            {
                break;
            }
        }

        TransferBenchmark.Row? transfer = null;
        if (transferRepetitions > 0 && !cancellationToken.IsCancellationRequested)
        {
            long size = Math.Min(1L << 30, (workload.LongTokens - 1) * setup.KvBytesPerToken) / 8 * 8;
            transfer = (await TransferBenchmark.RunAsync([Math.Max(8, size)], transferRepetitions, 0, log, cancellationToken).ConfigureAwait(false)).Rows[0];
        }

        return new Outcome(setup, TransferBenchmark.CpuModel(), options, workload, results, transfer);
    }

    /// <summary>Waits until the frontend's /health lists <paramref name="count"/> instances of <paramref name="model"/>, every instance of its endpoints available.</summary>
    private static async Task WaitForWorkersAsync(HttpClient http, string model, int count, CancellationToken cancellationToken)
    {
        while (true)
        {
            using (HttpResponseMessage response = await http.GetAsync("health", cancellationToken).ConfigureAwait(false))
            {
                using JsonDocument health = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false));
                JsonElement root = health.RootElement;
                int instances = root.TryGetProperty("models", out JsonElement models)
                    ? models.EnumerateArray().Where(m => m.GetProperty("name").GetString() == model).Sum(m => m.GetProperty("instances").GetArrayLength())
                    : 0;
                bool available = root.TryGetProperty("instances", out JsonElement all) && all.EnumerateArray().All(i => i.GetProperty("available").GetBoolean());
                if (instances >= count && available)
                {
                    return;
                }
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Untimed: two short prompts and one prompt just over max-local-prefill-length per worker that takes requests
    /// (JIT, connections, the first prefill of each kind); for a disaggregated deployment, then such prompts one at a
    /// time until a decode worker has had a prefill done remotely (the frontend routes with the prefill workers and
    /// the settings). Prompts of their own (seed + 1): no prefix of the workload's.
    /// </summary>
    private static async Task WarmUpAsync(DisaggWorkers workers, DeploymentShape shape, DisaggregationSettings settings, MixedLengthWorkload workload, LoadOptions options, TextWriter log, CancellationToken cancellationToken)
    {
        int probeTokens = Math.Min(workload.LongTokens, settings.MaxLocalPrefillLength + 16);
        LoadOptions warm = options with { NumPrompts = 3 * shape.Workers, Concurrency = shape.Workers, RequestRate = 0, OutputLen = 2, Seed = options.Seed + 1 };
        var mix = new MixedLengthWorkload(probeTokens, workload.ShortTokens, 1.0 / 3, workload.VocabSize);
        var (results, _, _) = await new LoadRunner(warm).RunAsync(mix.Build(warm), cancellationToken).ConfigureAwait(false);
        if (results.All(r => r.Outcome != RequestOutcome.Ok))
        {
            throw new IOException($"bench disagg: every warm-up request to the {shape.Name} deployment failed: {results.Select(r => r.Error).FirstOrDefault(e => e is not null)}");
        }

        var probe = new MixedLengthWorkload(probeTokens, probeTokens, 1, workload.VocabSize);
        int seed = options.Seed + 2;
        while (shape.IsDisaggregated && (await workers.ReadCountersAsync(cancellationToken).ConfigureAwait(false)).RemotePrefills == 0)
        {
            LoadOptions one = warm with { NumPrompts = 1, Concurrency = 1, Seed = seed++ };
            await new LoadRunner(one).RunAsync(probe.Build(one), cancellationToken).ConfigureAwait(false);
        }

        log.WriteLine($"bench disagg: {shape.Name}: warmed up");
    }

    private static async Task<DisaggCounters> CountersAsync(DisaggWorkers workers, HttpClient frontend, CancellationToken cancellationToken)
    {
        DisaggCounters counters = await workers.ReadCountersAsync(cancellationToken).ConfigureAwait(false);
        string metrics = await frontend.GetStringAsync("metrics", cancellationToken).ConfigureAwait(false);
        return counters with { Decisions = DisaggCounters.DecisionsOf(metrics, workers.Model) };
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

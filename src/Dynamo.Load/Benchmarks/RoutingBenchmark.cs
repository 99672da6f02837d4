using System.Globalization;
using Dynamo.Frontend;
using Dynamo.Llm.Engines;
using Dynamo.Load.Reports;
using Dynamo.Load.Workloads;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench routing</c>: routing quality. For each router mode, a fresh deployment in this process
/// (N workers, mockers in the CLI's wiring, with the same block manager as the engine; one HTTP frontend),
/// an untimed warm-up of short prompts of its own, then the same workload through bench serve's client
/// (open loop at --request-rate by default): TTFT mean/p99, throughput, rejections and the workers'
/// prefix-cache hit rate, side by side.
/// </summary>
internal static class RoutingBenchmark
{
    /// <summary>How the workers were set up, for the report's header (the composition root starts them).</summary>
    public sealed record Setup(int Workers, int NumGpuBlocks, double SpeedupRatio);

    /// <summary>One router mode's figures.</summary>
    public sealed record ModeResult(string Mode, LoadReport Report, double HitRate, long Preemptions);

    /// <summary>A whole run: the setup, the workload and its request count, and each mode's figures.</summary>
    public sealed record Outcome(Setup Setup, string Workload, LoadOptions Options, int Requests, IReadOnlyList<ModeResult> Modes)
    {
        /// <summary>One JSON object (indented): the setup, then one object per mode.</summary>
        public void WriteJson(Stream output)
        {
            JsonReport.Write(output, indented: true, w =>
            {
                w.WriteNumber("workers", Setup.Workers);
                w.WriteString("workload", Workload);
                w.WriteNumber("requests", Requests);
                w.WriteNumber("concurrency", Options.Concurrency);
                w.WriteNumber("request_rate", Options.RequestRate);
                w.WriteNumber("num_gpu_blocks", Setup.NumGpuBlocks);
                w.WriteNumber("speedup_ratio", Setup.SpeedupRatio);
                w.WriteStartArray("modes");
                foreach (ModeResult r in Modes)
                {
                    w.WriteStartObject();
                    w.WriteString("mode", r.Mode);
                    w.WriteNumber("completed", r.Report.Completed);
                    w.WriteNumber("rejected", r.Report.Rejected);
                    w.WriteNumber("errors", r.Report.Errors);
                    w.WriteNumber("ttft_mean_ms", Math.Round(r.Report.Ttft.Mean * 1000, 1));
                    w.WriteNumber("ttft_p99_ms", Math.Round(r.Report.Ttft.P99 * 1000, 1));
                    w.WriteNumber("e2e_mean_ms", Math.Round(r.Report.EndToEnd.Mean * 1000, 1));
                    w.WriteNumber("output_tokens_per_second", Math.Round(r.Report.OutputTokensPerSecond, 1));
                    w.WriteNumber("requests_per_second", Math.Round(r.Report.RequestsPerSecond, 2));
                    w.WriteNumber("prefix_hit_rate", Math.Round(r.HitRate, 4));
                    w.WriteNumber("preemptions", r.Preemptions);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            });
        }

        /// <summary>The table: the setup on one line, then one Markdown row per mode.</summary>
        public void WriteTable(TextWriter output)
        {
            output.WriteLine();
            output.WriteLine($"{Setup.Workers} mocker workers ({Setup.NumGpuBlocks} KV blocks each, speedup {Setup.SpeedupRatio}), workload {Workload}, {Requests} requests, concurrency {Options.Concurrency}{(Options.RequestRate > 0 ? string.Create(CultureInfo.InvariantCulture, $", {Options.RequestRate} conversations/s (Poisson)") : "")}");
            output.WriteLine("| mode | completed | rejected | errors | TTFT mean ms | TTFT p99 ms | e2e mean ms | output tok/s | prefix hit rate | preemptions |");
            output.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (ModeResult r in Modes)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Mode} | {r.Report.Completed} | {r.Report.Rejected} | {r.Report.Errors} | {r.Report.Ttft.Mean * 1000:F0} | {r.Report.Ttft.P99 * 1000:F0} | {r.Report.EndToEnd.Mean * 1000:F0} | {r.Report.OutputTokensPerSecond:F0} | {r.HitRate:P1} | {r.Preemptions} |"));
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="workload"/> once per mode of <paramref name="modes"/>, each on a fresh deployment of
    /// <see cref="Setup.Workers"/> workers from <paramref name="startWorker"/> behind a frontend with
    /// <paramref name="frontend"/> (host and port are this process's own; the router mode is the mode's).
    /// </summary>
    public static async Task<Outcome> RunAsync(Func<DistributedRuntime, CancellationToken, Task<BenchWorker>> startWorker, Setup setup, IReadOnlyList<string> modes,
        IWorkload workload, LoadOptions options, FrontendOptions frontend, TextWriter log, CancellationToken cancellationToken = default)
    {
        IReadOnlyList<LoadConversation> conversations = workload.Build(options);
        int requestCount = conversations.Sum(c => c.Turns.Count);
        var results = new List<ModeResult>();
        foreach (string mode in modes)
        {
            await using var cluster = new InProcessCluster();
            var started = new List<IAsyncDisposable>();
            var engines = new List<IEngine>();
            try
            {
                string model = "";
                for (int i = 0; i < setup.Workers; i++)
                {
                    DistributedRuntime runtime = await cluster.ConnectAsync(cancellationToken).ConfigureAwait(false);
                    started.Add(runtime);
                    BenchWorker worker = await startWorker(runtime, cancellationToken).ConfigureAwait(false);
                    started.Add(worker);
                    engines.Add(worker.Engine);
                    model = worker.Model;
                }

                DistributedRuntime frontendRuntime = await cluster.ConnectAsync(cancellationToken).ConfigureAwait(false);
                started.Add(frontendRuntime);
                FrontendServer server = await FrontendServer.StartAsync(frontendRuntime, ForMode(frontend, mode), NullLoggerFactory.Instance, cancellationToken).ConfigureAwait(false);
                started.Add(server);
                // Every worker routable before the first request: a router that saw fewer would spread the first
                // requests (round-robin) or their prefixes (kv) differently (a loaded machine's discovery lags).
                await server.WaitForModelAsync(model, cancellationToken, setup.Workers).ConfigureAwait(false);

                // Warm-up, not measured: short prompts of their own (no workload prefix), two per worker, so that
                // the first measured requests do not pay for JIT, connections and the router's start.
                LoadOptions warm = options with { Url = server.BaseAddress.ToString(), NumPrompts = 2 * setup.Workers, InputLen = 16, OutputLen = 2, Concurrency = setup.Workers, RequestRate = 0, Seed = options.Seed + 1 };
                await new LoadRunner(warm).RunAsync(new RandomWorkload().Build(warm), cancellationToken).ConfigureAwait(false);
                // The warm-up's prompts must not count as recent prefixes: wait out the router's recent-prefix window.
                await Task.Delay(frontend.Processing.KvRouter.RecentPrefixWindow + TimeSpan.FromMilliseconds(200), cancellationToken).ConfigureAwait(false);
                log.WriteLine($"bench routing: {mode}: {requestCount} requests of {workload.Name} on {setup.Workers} mocker workers...");
                var runner = new LoadRunner(options with { Url = server.BaseAddress.ToString() });
                long warmQuery = engines.Sum(e => e.Stats.PrefixQueryTokens), warmHit = engines.Sum(e => e.Stats.PrefixHitTokens);
                var (requests, seconds, interrupted) = await runner.RunAsync(conversations, cancellationToken).ConfigureAwait(false);

                // The measured requests' own lookups: the warm-up's are not the workload's.
                long query = engines.Sum(e => e.Stats.PrefixQueryTokens) - warmQuery, hit = engines.Sum(e => e.Stats.PrefixHitTokens) - warmHit;
                results.Add(new ModeResult(mode, LoadReport.From(options, workload.Name, requests, seconds, interrupted), query == 0 ? 0 : (double)hit / query, engines.Sum(e => e.Stats.Preemptions)));
                ModeResult r = results[^1];
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bench routing: {mode}: TTFT mean {r.Report.Ttft.Mean * 1000:F0} ms, hit rate {r.HitRate:P1}, prompt tokens per worker {string.Join(' ', engines.Select(e => e.Stats.PromptTokens))}, prefilled per worker {string.Join(' ', engines.Select(e => e.Stats.PrefixQueryTokens - e.Stats.PrefixHitTokens))}"));
            }
            finally
            {
                for (int i = started.Count - 1; i >= 0; i--)
                {
                    await started[i].DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        return new Outcome(setup, workload.Name, options, requestCount, results);
    }

    /// <summary>The frontend of one mode's deployment: on loopback, any free port, routing by <paramref name="mode"/>; validated.</summary>
    public static FrontendOptions ForMode(FrontendOptions options, string mode) =>
        (options with { Host = "127.0.0.1", HttpPort = 0, Processing = options.Processing with { RouterMode = mode } }).Validate();
}

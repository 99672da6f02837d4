using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Dynamo.Cli.Components;
using Dynamo.Load;
using Dynamo.Load.Reports;
using Dynamo.Load.Workloads;
using Dynamo.Components.Processing;
using Dynamo.Frontend;
using Dynamo.Llm.Engines;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench routing</c>: routing quality. For each router mode, a fresh deployment in this process
/// (N mocker workers with the same block manager as the engine, one HTTP frontend), an untimed warm-up of
/// short prompts of its own, then the same workload through bench serve's client (open loop at
/// --request-rate by default): TTFT mean/p99, throughput, rejections and the workers' prefix-cache hit
/// rate, side by side.
/// </summary>
internal static class BenchRoutingCommand
{
    private sealed record ModeResult(string Mode, LoadReport Report, double HitRate, long Preemptions);

    public static Command Create()
    {
        var workers = new Option<int>("--workers") { Description = "Mocker workers", DefaultValueFactory = _ => 8 };
        var modes = new Option<string>("--modes") { Description = "Comma-separated router modes", DefaultValueFactory = _ => "kv,round-robin,random" };
        var blocks = new Option<int>("--num-gpu-blocks") { Description = "Each mocker's KV pool, in blocks of 16 tokens", DefaultValueFactory = _ => 2048 };
        var speedup = new Option<double>("--speedup-ratio") { Description = "Mocker time runs this many times faster", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("routing", "Routing quality on mocker workers: TTFT, throughput, rejections and prefix hits for each router mode")
        {
            workers, modes, blocks, speedup, json,
        };
        // The defaults reproduce the headline table of docs/benchmarks.md ("Routing quality").
        LoadFlags loadFlags = LoadFlags.AddTo(command, SharedPrefixWorkload.WorkloadName, concurrency: 256, numPrompts: 400, traceBlockTokens: 16, inputLen: 600, outputLen: 8, requestRate: 40);
        KvRouterFlags kv = KvRouterFlags.AddTo(command);
        command.SetAction(parse => CliErrors.Run(() =>
        {
            int w = parse.GetValue(workers);
            if (w < 1)
            {
                throw new CliUsageException($"--workers: {w} must be at least 1");
            }

            string[] list = parse.GetValue(modes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            LoadOptions options = loadFlags.Read(parse, "http://127.0.0.1:1", "mocker");
            IWorkload load = loadFlags.Workload(parse);
            FrontendOptions frontend = FrontendOptions.Default with { Processing = ProcessorOptions.Default with { KvRouter = kv.Read(parse) } };
            foreach (string mode in list)
            {
                frontend.With(mode);
            }

            return RunAsync(w, list, load, options, frontend, parse.GetValue(blocks), parse.GetValue(speedup), parse.GetValue(json)).GetAwaiter().GetResult();
        }));
        return command;
    }

    private static FrontendOptions With(this FrontendOptions options, string mode)
    {
        FrontendOptions result = options with { Host = "127.0.0.1", HttpPort = 0, Processing = options.Processing with { RouterMode = mode } };
        try
        {
            result.Validate();
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }

        return result;
    }

    private static async Task<int> RunAsync(int workerCount, string[] modes, IWorkload workload, LoadOptions options, FrontendOptions frontend, int blocks, double speedup, bool json)
    {
        TextWriter log = Console.Error;
        IReadOnlyList<LoadConversation> conversations = workload.Build(options);
        var results = new List<ModeResult>();
        foreach (string mode in modes)
        {
            await using var cluster = new InProcessCluster();
            var started = new List<IAsyncDisposable>();
            var engines = new List<IEngine>();
            try
            {
                for (int i = 0; i < workerCount; i++)
                {
                    DistributedRuntime runtime = await cluster.ConnectAsync();
                    started.Add(runtime);
                    var worker = await WorkerComponent.StartAsync(runtime, new WorkerSettings
                    {
                        EngineKind = "mocker",
                        ServedModelName = "mocker",
                        SpeedupRatio = speedup,
                        NumGpuBlocks = blocks,

                        // The mocker models a GPU worker: its own batch limits, not the CPU engine's 512-token steps.
                        Engine = Engine.Serving.EngineOptions.Default with
                        {
                            MaxNumBatchedTokens = Mocker.MockerOptions.Default.MaxNumBatchedTokens,
                            MaxNumSeqs = Mocker.MockerOptions.Default.MaxNumSeqs,
                        },
                    }, TextWriter.Null);
                    started.Add(worker);
                    engines.Add(worker.Engine);
                }

                DistributedRuntime frontendRuntime = await cluster.ConnectAsync();
                started.Add(frontendRuntime);
                FrontendServer server = await FrontendServer.StartAsync(frontendRuntime, frontend.With(mode), Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
                started.Add(server);
                await server.WaitForModelAsync("mocker");

                // Warm-up, not measured: short prompts of their own (no workload prefix), two per worker, so that
                // the first measured requests do not pay for JIT, connections and the router's start.
                LoadOptions warm = options with { Url = server.BaseAddress.ToString(), NumPrompts = 2 * workerCount, InputLen = 16, OutputLen = 2, Concurrency = workerCount, RequestRate = 0, Seed = options.Seed + 1 };
                await new LoadRunner(warm).RunAsync(new RandomWorkload().Build(warm));
                await Task.Delay(1200);
                log.WriteLine($"bench routing: {mode}: {conversations.Sum(c => c.Turns.Count)} requests of {workload.Name} on {workerCount} mocker workers...");
                var runner = new LoadRunner(options with { Url = server.BaseAddress.ToString() });
                var (requests, seconds, interrupted) = await runner.RunAsync(conversations);
                long query = engines.Sum(e => e.Stats.PrefixQueryTokens), hit = engines.Sum(e => e.Stats.PrefixHitTokens);
                results.Add(new ModeResult(mode, LoadReport.From(options, workload.Name, requests, seconds, interrupted), query == 0 ? 0 : (double)hit / query, engines.Sum(e => e.Stats.Preemptions)));
                ModeResult r = results[^1];
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bench routing: {mode}: TTFT mean {r.Report.Ttft.Mean * 1000:F0} ms, hit rate {r.HitRate:P1}, prompt tokens per worker {string.Join(' ', engines.Select(e => e.Stats.PromptTokens))}, prefilled per worker {string.Join(' ', engines.Select(e => e.Stats.PrefixQueryTokens - e.Stats.PrefixHitTokens))}"));
            }
            finally
            {
                for (int i = started.Count - 1; i >= 0; i--)
                {
                    await started[i].DisposeAsync();
                }
            }
        }

        if (json)
        {
            using Stream stdout = Console.OpenStandardOutput();
            using var w = new Utf8JsonWriter(stdout, new JsonWriterOptions { Indented = true });
            w.WriteStartObject();
            w.WriteNumber("workers", workerCount);
            w.WriteString("workload", workload.Name);
            w.WriteNumber("requests", conversations.Sum(c => c.Turns.Count));
            w.WriteNumber("concurrency", options.Concurrency);
            w.WriteNumber("request_rate", options.RequestRate);
            w.WriteNumber("num_gpu_blocks", blocks);
            w.WriteNumber("speedup_ratio", speedup);
            w.WriteStartArray("modes");
            foreach (ModeResult r in results)
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
            w.WriteEndObject();
            w.Flush();
            stdout.WriteByte((byte)'\n');
        }
        else
        {
            Console.WriteLine();
            Console.WriteLine($"{workerCount} mocker workers ({blocks} KV blocks each, speedup {speedup}), workload {workload.Name}, {conversations.Sum(c => c.Turns.Count)} requests, concurrency {options.Concurrency}{(options.RequestRate > 0 ? string.Create(CultureInfo.InvariantCulture, $", {options.RequestRate} conversations/s (Poisson)") : "")}");
            Console.WriteLine("| mode | completed | rejected | errors | TTFT mean ms | TTFT p99 ms | e2e mean ms | output tok/s | prefix hit rate | preemptions |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (ModeResult r in results)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {r.Mode} | {r.Report.Completed} | {r.Report.Rejected} | {r.Report.Errors} | {r.Report.Ttft.Mean * 1000:F0} | {r.Report.Ttft.P99 * 1000:F0} | {r.Report.EndToEnd.Mean * 1000:F0} | {r.Report.OutputTokensPerSecond:F0} | {r.HitRate:P1} | {r.Preemptions} |"));
            }
        }

        return results.All(r => r.Report.Completed > 0) ? 0 : 1;
    }
}

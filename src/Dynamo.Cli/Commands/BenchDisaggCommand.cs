using System.CommandLine;
using System.Globalization;
using Dynamo.Cli.Components;
using Dynamo.Components.Processing;
using Dynamo.Components.Workers;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Llm.Disaggregation;
using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Workloads;
using Dynamo.Mocker;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo bench disagg</c>: disaggregated (prefill + decode workers) against aggregated serving on the same
/// number of workers (see <see cref="DisaggBenchmark"/>). <c>--engine dynamo</c>: the built-in engine in
/// <c>dynamo worker</c> processes of this executable on NATS and etcd (from the environment, or started here), so
/// that each worker has compute threads of its own; <c>--engine mocker</c>: mocker workers in this process at scale,
/// their data-less KV payloads delayed by a simulated link.
/// </summary>
internal static class BenchDisaggCommand
{
    /// <summary>
/// Defaults per engine: the issue's comparison (1 + 1 worker processes) and the mocker at scale (16 + 16, its time
/// dilated ten times: decode batches of tens of sequences per worker at a request rate this process can drive);
/// <c>--quick</c> for tests.
/// </summary>
    private sealed record Defaults(int PrefillWorkers, int DecodeWorkers, int NumPrompts, double RequestRate, double SpeedupRatio, int TransferRepetitions);

    private static readonly Defaults Dynamo = new(1, 1, 40, 0.25, 1, 5);
    private static readonly Defaults Mocker = new(16, 16, 400, 40, 0.1, 5);
    private static readonly Defaults DynamoQuick = new(1, 1, 4, 2, 1, 2);
    private static readonly Defaults MockerQuick = new(2, 2, 24, 20, 10, 2);

    public static Command Create()
    {
        var engine = new Option<string>("--engine") { Description = "dynamo (the built-in engine, one `dynamo worker` process per worker) or mocker (mocker workers in this process, a simulated KV link)", DefaultValueFactory = _ => "dynamo" };
        var model = new Option<string?>("--model", "-m") { Description = "--engine dynamo: the model (GGUF, Hugging Face folder); its context must hold --long-len + --output-len" };
        var threads = new Option<int>("--threads", "-t") { Description = "--engine dynamo: compute threads of each worker process", DefaultValueFactory = _ => 1 };
        var kvMemory = new Option<long>("--kv-cache-memory") { Description = "--engine dynamo: each worker's KV cache in bytes", DefaultValueFactory = _ => 1L << 30 };
        var prefillWorkers = new Option<int?>("--prefill-workers") { Description = "Prefill workers of the disaggregated deployment (default: 1 with dynamo, 16 with mocker); the aggregated one has prefill + decode workers" };
        var decodeWorkers = new Option<int?>("--decode-workers") { Description = "Decode workers of the disaggregated deployment (default: 1 with dynamo, 16 with mocker)" };
        var longLen = new Option<int>("--long-len") { Description = "Tokens of a long prompt", DefaultValueFactory = _ => 2000 };
        var shortLen = new Option<int>("--short-len") { Description = "Tokens of a short prompt", DefaultValueFactory = _ => 100 };
        var longFraction = new Option<double>("--long-fraction") { Description = "Share of the requests with a long prompt", DefaultValueFactory = _ => 0.25 };
        var outputLen = new Option<int>("--output-len") { Description = "Output tokens of every request (EOS ignored)", DefaultValueFactory = _ => LoadOptions.DefaultOutputLen };
        var numPrompts = new Option<int?>("--num-prompts", "-n") { Description = "Requests per deployment (default: 40 with dynamo, 400 with mocker)" };
        var rate = new Option<double?>("--request-rate") { Description = "Requests per second, Poisson arrivals, the same for both deployments (default: 0.25 with dynamo, 40 with mocker)" };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Requests in flight at most (high: open loop)", DefaultValueFactory = _ => 1024 };
        var seed = new Option<int>("--seed") { Description = "Seed of the prompts, their order and arrivals", DefaultValueFactory = _ => LoadOptions.Default.Seed };
        var maxLocal = new Option<int?>("--max-local-prefill-length") { Description = "Prompts of at most this many uncached tokens prefill on the decode worker (default: halfway between --short-len and --long-len)" };
        var maxQueue = new Option<int>("--max-prefill-queue-size") { Description = "Remote prefill only while fewer requests wait at the prefill workers", DefaultValueFactory = _ => 1000 };
        var routerMode = new Option<string>("--router-mode") { Description = "The frontend's router mode (prefill workers are always chosen KV-aware)", DefaultValueFactory = _ => "kv" };
        var bytesPerToken = new Option<long?>("--kv-bytes-per-token") { Description = $"--engine mocker: KV bytes per prompt token over the simulated link (default {SimulatedKvLink.Default.BytesPerToken:N0}: the 110m model's 2 x 12 layers x 12 heads x 64 dims x 4 bytes); with dynamo the model's" };
        var gbps = new Option<double>("--link-gbps") { Description = "--engine mocker: bandwidth of the simulated link, Gbit/s", DefaultValueFactory = _ => SimulatedKvLink.Default.Gbps };
        var latency = new Option<double>("--link-latency-us") { Description = "--engine mocker: latency of the simulated link per transfer, microseconds", DefaultValueFactory = _ => SimulatedKvLink.Default.Latency.TotalMicroseconds };
        var speedup = new Option<double?>("--speedup-ratio") { Description = "--engine mocker: simulated time runs this many times faster, the link's too (default 0.1: ten times slower, so that 40 requests/s load the workers as 400/s would at speedup 1 while the frontend and client in this process keep up)" };
        var blocks = new Option<int>("--num-gpu-blocks") { Description = "--engine mocker: each mocker's KV pool, in blocks of 16 tokens", DefaultValueFactory = _ => MockerOptions.Default.NumGpuBlocks };
        var transferReps = new Option<int?>("--transfer-repetitions") { Description = "Repetitions of the KV transfer section (one long prompt's KV: memory copy, plain TCP, KvTransfer); 0 leaves it out (default 5)" };
        var deployments = new Option<string>("--deployments") { Description = "Which deployments to run, in order: aggregated, disaggregated", DefaultValueFactory = _ => "aggregated,disaggregated" };
        var quick = new Option<bool>("--quick") { Description = "Small defaults that run in seconds (mocker: 2 + 2 workers, 24 requests at speedup 10; dynamo: 4 requests)" };
        var noProgress = new Option<bool>("--no-progress") { Description = "No progress bar (it is off anyway when stderr is not a terminal)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object on stdout instead of the table" };
        var command = new Command("disagg", "Disaggregated (prefill + decode workers) vs aggregated serving on the same workers: TTFT, ITL, output tok/s, remote prefills, KV transfer GB/s")
        {
            engine, model, threads, kvMemory, prefillWorkers, decodeWorkers, longLen, shortLen, longFraction, outputLen, numPrompts, rate, concurrency, seed,
            maxLocal, maxQueue, routerMode, bytesPerToken, gbps, latency, speedup, blocks, transferReps, deployments, quick, noProgress, json,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            string kind = parse.GetValue(engine)!;
            bool mocker = kind switch
            {
                "mocker" => true,
                "dynamo" => false,
                _ => throw new CliUsageException($"--engine: '{kind}' is not dynamo or mocker"),
            };
            Defaults d = (mocker, parse.GetValue(quick)) switch
            {
                (true, true) => MockerQuick,
                (true, false) => Mocker,
                (false, true) => DynamoQuick,
                (false, false) => Dynamo,
            };
            int p = parse.GetValue(prefillWorkers) ?? d.PrefillWorkers, w = parse.GetValue(decodeWorkers) ?? d.DecodeWorkers;
            int longTokens = parse.GetValue(longLen), shortTokens = parse.GetValue(shortLen), reps = parse.GetValue(transferReps) ?? d.TransferRepetitions;
            double fraction = parse.GetValue(longFraction);
            if (p < 1 || w < 1)
            {
                throw new CliUsageException("--prefill-workers and --decode-workers must be at least 1");
            }

            if (shortTokens < 1 || longTokens <= shortTokens)
            {
                throw new CliUsageException($"--short-len ({shortTokens}) must be at least 1 and below --long-len ({longTokens})");
            }

            if (!(fraction is >= 0 and <= 1))
            {
                throw new CliUsageException($"--long-fraction must be from 0 to 1 (got {fraction})");
            }

            if (reps < 0)
            {
                throw new CliUsageException($"--transfer-repetitions must be 0 or more (got {reps})");
            }

            var settings = new DisaggregationSettings
            {
                MaxLocalPrefillLength = parse.GetValue(maxLocal) ?? (shortTokens + longTokens) / 2,
                MaxPrefillQueueSize = parse.GetValue(maxQueue),
            }.Validate();
            if (settings.MaxLocalPrefillLength < shortTokens || settings.MaxLocalPrefillLength >= longTokens)
            {
                throw new CliUsageException($"--max-local-prefill-length {settings.MaxLocalPrefillLength} must lie from --short-len ({shortTokens}) to below --long-len ({longTokens}): short prompts prefill locally, long ones remotely");
            }

            DeploymentShape[] shapes = [.. parse.GetValue(deployments)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(name => name switch
            {
                "aggregated" => new DeploymentShape(0, p + w),
                "disaggregated" => new DeploymentShape(p, w),
                _ => throw new CliUsageException($"--deployments: '{name}' is not aggregated or disaggregated"),
            })];
            if (shapes.Length == 0)
            {
                throw new CliUsageException("--deployments: name at least one of aggregated, disaggregated");
            }

            var options = new LoadOptions
            {
                Url = "http://127.0.0.1:1",
                Model = "bench",
                Concurrency = parse.GetValue(concurrency),
                NumPrompts = parse.GetValue(numPrompts) ?? d.NumPrompts,
                OutputLen = parse.GetValue(outputLen),
                RequestRate = parse.GetValue(rate) ?? d.RequestRate,
                Seed = parse.GetValue(seed),
            };
            options.Validate();
            if (options.RequestRate <= 0)
            {
                throw new CliUsageException($"--request-rate must be positive (got {options.RequestRate}): the load is open loop");
            }

            FrontendOptions frontend = FrontendOptions.Default with { Processing = ProcessorOptions.Default with { RouterMode = parse.GetValue(routerMode)! } };
            frontend.Validate();
            bool progress = !parse.GetValue(noProgress) && !Console.IsErrorRedirected;
            TextWriter log = Console.Error;
            SimulatedKvLink link = new SimulatedKvLink
            {
                BytesPerToken = parse.GetValue(bytesPerToken) ?? SimulatedKvLink.Default.BytesPerToken,
                Gbps = parse.GetValue(gbps),
                Latency = TimeSpan.FromMicroseconds(parse.GetValue(latency)),
            }.Validate();
            (int, int, double) mix = (longTokens, shortTokens, fraction);

            // Ctrl-C and SIGTERM cancel the run, so that the worker processes, nats-server and etcd it started are stopped.
            using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
            DisaggBenchmark.Outcome outcome;
            try
            {
                outcome = mocker
                    ? await RunMockersAsync(parse.GetValue(speedup) ?? d.SpeedupRatio, parse.GetValue(blocks), link, settings, shapes, mix, options, frontend, reps, progress, log, shutdown.Token)
                    : await RunProcessesAsync(parse.GetValue(model), parse.GetValue(threads), parse.GetValue(kvMemory), parse.GetResult(bytesPerToken) is not null, settings, shapes,
                        mix, options, frontend, reps, progress, log, shutdown.Token);
            }
            catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
            {
                await log.WriteLineAsync("bench disagg: interrupted before a deployment finished; what it started is stopped");
                return 1;
            }

            if (parse.GetValue(json))
            {
                using Stream stdout = Console.OpenStandardOutput();
                outcome.WriteJson(stdout);
            }
            else
            {
                outcome.WriteTable(Console.Out);
            }

            return outcome.Deployments.Count == shapes.Length && outcome.Deployments.All(r => r.Report.Completed > 0) ? 0 : 1;
        });
        return command;
    }

    /// <summary>Mocker workers in this process, the link scaled to their clock.</summary>
    private static async Task<DisaggBenchmark.Outcome> RunMockersAsync(double speedup, int blocks, SimulatedKvLink link, DisaggregationSettings settings,
        DeploymentShape[] shapes, (int Long, int Short, double Fraction) mix, LoadOptions options, FrontendOptions frontend, int reps, bool progress, TextWriter log, CancellationToken cancellationToken)
    {
        WorkerSettings worker = new WorkerSettings
        {
            EngineKind = "mocker",
            ServedModelName = "mocker",
            Mocker = MockerOptions.Default with { SpeedupRatio = speedup, NumGpuBlocks = blocks },

            // The mocker models a GPU worker: its own batch limits, not the CPU engine's 512-token steps.
            Engine = EngineOptions.Default with
            {
                MaxNumBatchedTokens = MockerOptions.Default.MaxNumBatchedTokens,
                MaxNumSeqs = MockerOptions.Default.MaxNumSeqs,
            },
        }.Validate();
        MockerOptions m = worker.Mocker;
        var setup = new DisaggBenchmark.Setup(
            "mocker",
            Invariant($"mocker (cost model: {m.StepMs} ms per step + {m.PrefillMsPerToken} ms per prefill token + {m.DecodeMsPerSequence} ms per decoding sequence, {m.MaxNumBatchedTokens} tokens per step at most; speedup {m.SpeedupRatio})"),
            "mocker workers in this process",
            "in-process discovery and request plane (a fresh cluster per deployment), KV pushed over loopback TCP",
            settings,
            link.BytesPerToken,
            Invariant($"{link.BytesPerToken:N0} bytes per token over {link.Gbps} Gbit/s, {link.Latency.TotalMicroseconds} µs latency{(speedup == 1 ? "" : $", on the mocker's clock (speedup {speedup})")}"));
        string tokenizer = DefaultModel.EnsurePath();
        int vocab;
        using (LoadedModel loaded = LoadedModel.Load(tokenizer))
        {
            vocab = loaded.Config.VocabSize;
        }

        var deployer = new InProcessDeployer(BenchWorkers.StartingMockers(worker, link.ScaledBy(speedup), tokenizer, vocab), settings, setup.Workers);
        var workload = new MixedLengthWorkload(mix.Long, mix.Short, mix.Fraction, vocab);
        return await DisaggBenchmark.RunAsync(deployer, setup, shapes, workload, options, frontend, reps, progress, log, cancellationToken);
    }

    /// <summary>The built-in engine in worker processes: the model's shape checked and described, NATS and etcd found or started.</summary>
    private static async Task<DisaggBenchmark.Outcome> RunProcessesAsync(string? path, int threads, long kvMemory, bool bytesPerTokenGiven, DisaggregationSettings settings,
        DeploymentShape[] shapes, (int Long, int Short, double Fraction) mix, LoadOptions options, FrontendOptions frontend, int reps, bool progress, TextWriter log, CancellationToken cancellationToken)
    {
        if (path is null)
        {
            throw new CliUsageException("--model is required with --engine dynamo (e.g. ./dynamo model synth --preset 110m --type Q8_0 --context-length 4096 -o /tmp/110m.gguf), or use --engine mocker");
        }

        if (bytesPerTokenGiven)
        {
            throw new CliUsageException("--kv-bytes-per-token goes with --engine mocker: the built-in engine's KV size is the model's");
        }

        if (threads < 1 || kvMemory < 1)
        {
            throw new CliUsageException("--threads and --kv-cache-memory must be at least 1");
        }

        ModelConfig c;
        using (LoadedModel loaded = LoadedModel.Load(path))
        {
            c = loaded.Config;
        }

        int needed = mix.Long + options.OutputTokens;
        if (needed > c.ContextLength)
        {
            throw new CliUsageException($"--long-len {mix.Long} + --output-len {options.OutputTokens} needs a context of {needed} tokens; {path} has {c.ContextLength} (./dynamo model synth --context-length sets it)");
        }

        KvCacheDtype kvDtype = EngineOptions.Default.KvCacheDtype; // what the workers it starts store
        long kvBytesPerToken = PagedKvCache.BytesPerBlock(c, 1, kvDtype);
        string served = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(path));
        await using LocalServers servers = await LocalServers.StartAsync(
            Environment.GetEnvironmentVariable(Runtime.RuntimeOptions.NatsServerVariable), Environment.GetEnvironmentVariable(Runtime.RuntimeOptions.EtcdEndpointsVariable), log, cancellationToken: cancellationToken);
        var setup = new DisaggBenchmark.Setup(
            "dynamo",
            Invariant($"{path} ({c.Architecture}, dim {c.Dim}, {c.Layers} layers, {c.KvHeads} KV heads of {c.HeadDim}, vocab {c.VocabSize}, context {c.ContextLength}; KV {kvBytesPerToken:N0} bytes per token in {kvDtype.Name()})"),
            Invariant($"dynamo worker processes, {threads} compute thread{(threads == 1 ? "" : "s")} and a {kvMemory:N0}-byte KV cache each; the frontend and the load client in this process"),
            servers.Description,
            settings,
            kvBytesPerToken,
            null);
        var deployer = new WorkerProcessDeployer(SelfCommand(),
            ["--model", path, "--threads", Invariant($"{threads}"), "--kv-cache-memory", Invariant($"{kvMemory}")], served, servers, settings, setup.Workers, log);
        var workload = new MixedLengthWorkload(mix.Long, mix.Short, mix.Fraction, c.VocabSize);
        return await DisaggBenchmark.RunAsync(deployer, setup, shapes, workload, options, frontend, reps, progress, log, cancellationToken);
    }

    /// <summary>How to start this executable again: <c>dotnet dynamo.dll</c>, or the app host itself.</summary>
    internal static string[] SelfCommand()
    {
        string process = Environment.ProcessPath ?? "dotnet";
        string assembly = typeof(BenchDisaggCommand).Assembly.Location;
        return Path.GetFileNameWithoutExtension(process) == "dotnet" ? [process, assembly] : [process];
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

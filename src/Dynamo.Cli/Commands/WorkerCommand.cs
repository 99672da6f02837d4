using System.CommandLine;
using System.Globalization;
using Dynamo.Cli.Components;
using Dynamo.Components.Workers;
using Dynamo.Mocker;
using Dynamo.Runtime;
using OpenTelemetry.Trace;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo worker</c>: loads a model, connects to etcd and NATS (NATS_SERVER, ETCD_ENDPOINTS; localhost
/// by default), serves the engine on namespace.component.generate, publishes the model card, and runs
/// until Ctrl-C / SIGTERM, then drains and leaves discovery. Accepts the guides' vLLM and SGLang spellings. With
/// --tensor-parallel-size N (or --pipeline-parallel-size N) the model is split over N rank processes
/// (TensorParallelRanks): rank 0 serves as this worker, the others need no NATS or etcd.
/// </summary>
internal static class WorkerCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model", "-m", "--model-path") { Description = "A GGUF file, a Hugging Face directory or a llama2.c checkpoint (default with --engine echo/mocker: the default model's tokenizer)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file (required for llama2.c checkpoints); overrides the model's own" };
        var servedName = new Option<string?>("--served-model-name") { Description = "The model name clients ask for (default: the file or folder name)" };
        var engine = new Option<string>("--engine") { Description = "dynamo (the built-in engine), echo, or mocker (simulated, no model)", DefaultValueFactory = _ => "dynamo" };
        var ns = new Option<string>("--namespace") { Description = "Runtime namespace", DefaultValueFactory = _ => "dynamo" };
        var component = new Option<string?>("--component") { Description = "Component name (default: backend, or prefill for a prefill worker)" };
        var endpoint = new Option<string>("--endpoint") { Description = "Endpoint name", DefaultValueFactory = _ => "generate" };
        var prefill = new Option<bool>("--is-prefill-worker") { Description = "Register as a prefill worker (component 'prefill')" };
        var disaggregation = new Option<string?>("--disaggregation-mode") { Description = "SGLang spelling: prefill or decode" };
        var threads = new Option<int>("--threads") { Description = "Compute threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var leaseTtl = new Option<int>("--lease-ttl") { Description = "Seconds a dead worker stays in discovery at most", DefaultValueFactory = _ => 10 };
        var drainTimeout = new Option<double>("--drain-timeout") { Description = "Seconds in-flight requests may take to finish on SIGTERM before the rest move to other workers", DefaultValueFactory = _ => 30 };
        var maxWaiting = new Option<int>("--max-waiting-requests") { Description = "Requests waiting here without having produced anything; one more is refused at once (worker_overloaded) and goes to another worker", DefaultValueFactory = _ => EngineWorkerOptions.Default.MaxWaitingRequests };
        var systemPort = new Option<int?>("--system-port") { Description = "Port of this worker's /metrics, /health, /live (env DYN_SYSTEM_PORT)" };
        var systemHost = new Option<string?>("--system-host") { Description = "Address the system port listens on (env DYN_SYSTEM_HOST; default 127.0.0.1, this host only; 0.0.0.0 for every interface)" };
        var speedup = new Option<double>("--speedup-ratio") { Description = "Mocker: simulated time runs this many times faster", DefaultValueFactory = _ => MockerOptions.Default.SpeedupRatio };
        var gpuBlocks = new Option<int?>("--num-gpu-blocks") { Description = "Mocker: KV pool size in blocks" };
        var eventLoss = new Option<double>("--kv-event-loss") { Description = "Mocker, fault injection: the share (0..1) of its KV events lost without a gap in their ids, so that only the router's accuracy check can notice (see --router-resync-accuracy)" };
        var tp = new Option<int>("--tensor-parallel-size", "--tp", "--tp-size") { Description = "Split the model over this many rank processes (heads, FFN units and vocabulary); rank 0 serves, the others follow", DefaultValueFactory = _ => 1 };
        var pp = new Option<int>("--pipeline-parallel-size", "--pp", "--pp-size") { Description = "Split the model's layers over this many rank processes (pipeline stages); rank 0 serves, the others follow; not with --tensor-parallel-size > 1", DefaultValueFactory = _ => 1 };
        var microBatches = new Option<int?>("--pp-micro-batches") { Description = "Pipeline: micro-batches a forward pass is cut into, so that stages overlap (default: one per stage)" };
        var nnodes = new Option<int>("--nnodes") { Description = "Nodes the tensor- or pipeline-parallel ranks are spread over (one command per node)", DefaultValueFactory = _ => 1 };
        var nodeRank = new Option<int>("--node-rank") { Description = "This node, 0..nnodes-1 (node 0 runs rank 0, which registers the worker)", DefaultValueFactory = _ => 0 };
        var initAddr = new Option<string?>("--dist-init-addr") { Description = "HOST:PORT where rank 0 meets the other ranks (required with --nnodes > 1; on one node a free local port)" };
        var tpTransport = new Option<string>("--tp-transport") { Description = "Collectives between ranks: auto (shared memory on a node, TCP between nodes), tcp or shm", DefaultValueFactory = _ => "auto" };
        var distTimeout = new Option<double>("--dist-timeout") { Description = "Seconds a rank waits for rank 0 at start, and a silent rank gets before it counts as lost", DefaultValueFactory = _ => 120 };
        var rankTimeout = new Option<double>("--rank-timeout") { Description = "Seconds a tensor- or pipeline-parallel rank may stay silent while serving before it counts as lost (the worker then leaves discovery)", DefaultValueFactory = _ => 30 };
        var tpRank = new Option<int?>("--tp-rank") { Description = "Internal: the rank of a process the worker command started for its node", Hidden = true };
        var dp = new Option<int>("--dp-size", "--dp", "--data-parallel-size") { Description = "Engine replicas behind this worker, each its own KV cache and routing target (worker, dp_rank); with --nnodes each node serves its share", DefaultValueFactory = _ => 1 };
        var dpAttention = new Option<bool>("--enable-dp-attention") { Description = "SGLang's data-parallel attention: the --tp ranks are shared out among the --dp-size replicas (tp / dp each)" };
        var ignoredValues = Array.Empty<string>()
            .Select(n => new Option<string?>(n) { Description = "Accepted for the guides; no effect here (said at startup)" }).ToArray();
        var ignoredSwitches = new[] { "--trust-remote-code", "--skip-tokenizer-init", "--enforce-eager" }
            .Select(n => new Option<bool>(n) { Description = "Accepted for the guides; no effect here (said at startup)" }).ToArray();
        var command = new Command("worker", "Serve a model's engine to the rest of the system over etcd and NATS (NATS_SERVER, ETCD_ENDPOINTS)")
        {
            model, tokenizer, servedName, engine, ns, component, endpoint, prefill, disaggregation,
        };
        EngineFlags engineFlags = EngineFlags.AddTo(command);
        DisaggregationFlags disaggFlags = DisaggregationFlags.AddTo(command);
        foreach (Option o in new Option[] { threads, leaseTtl, drainTimeout, maxWaiting, systemPort, systemHost, speedup, gpuBlocks, eventLoss, tp, pp, microBatches, nnodes, nodeRank, initAddr, tpTransport, distTimeout, rankTimeout, tpRank, dp, dpAttention })
        {
            command.Options.Add(o);
        }

        foreach (Option o in ignoredValues)
        {
            command.Options.Add(o);
        }

        foreach (Option o in ignoredSwitches)
        {
            command.Options.Add(o);
        }

        Option<double?> waitForInfra = RuntimeConnection.AddWaitForInfra(command);
        TracingFlags tracing = TracingFlags.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            int ttl = parse.GetValue(leaseTtl);
            if (ttl < 1)
            {
                throw new CliUsageException($"--lease-ttl: {ttl} must be at least 1 second");
            }

            string? mode = parse.GetValue(disaggregation);
            if (mode is not (null or "prefill" or "decode" or "null"))
            {
                throw new CliUsageException($"--disaggregation-mode: '{mode}' is not prefill or decode");
            }

            bool isPrefill = parse.GetValue(prefill) || mode == "prefill";
            var ignored = new List<string>();
            TensorParallelSettings parallel;
            try
            {
                parallel = TensorParallelSettings.None.WithSizes(parse.GetValue(tp), parse.GetValue(pp));
            }
            catch (ArgumentException e)
            {
                throw new CliUsageException(e.Message);
            }

            parallel = parallel with
            {
                MicroBatches = parse.GetValue(microBatches),
                Nodes = parse.GetValue(nnodes),
                NodeRank = parse.GetValue(nodeRank),
                InitAddress = parse.GetValue(initAddr),
                SpawnedRank = parse.GetValue(tpRank),
                Transport = parse.GetValue(tpTransport)!,
                Timeout = FrontendFlags.Seconds(parse.GetValue(distTimeout)),
                RankTimeout = FrontendFlags.Seconds(parse.GetValue(rankTimeout)),
            };

            TensorParallelSettings tensor;
            DataParallelSettings data;
            try
            {
                (tensor, data) = DataParallelSettings.Resolve(parallel, parse.GetValue(dp), parse.GetValue(dpAttention));
            }
            catch (ArgumentException e)
            {
                throw new CliUsageException(e.Message);
            }

            if (!data.Enabled && data.Attention)
            {
                ignored.Add("--enable-dp-attention (without --dp-size above 1)");
            }

            ignored.AddRange(ignoredValues.Where(o => parse.GetResult(o) is not null).Select(o => $"{o.Name} {parse.GetValue(o)}"));
            ignored.AddRange(ignoredSwitches.Where(o => parse.GetValue(o)).Select(o => o.Name));
            WorkerSettings settings = disaggFlags.Apply(parse, new WorkerSettings
            {
                ModelPath = parse.GetValue(model),
                TokenizerPath = parse.GetValue(tokenizer),
                ServedModelName = parse.GetValue(servedName),
                EngineKind = parse.GetValue(engine)!,
                Address = new EndpointAddress(parse.GetValue(ns)!, parse.GetValue(component) ?? (isPrefill ? "prefill" : "backend"), parse.GetValue(endpoint)!),
                IsPrefillWorker = isPrefill,
                Engine = engineFlags.Read(parse),
                Mocker = MockerOptions.Default with
                {
                    SpeedupRatio = parse.GetValue(speedup),
                    NumGpuBlocks = parse.GetValue(gpuBlocks) ?? MockerOptions.Default.NumGpuBlocks,
                    KvEventLoss = parse.GetValue(eventLoss),
                },
                Threads = parse.GetValue(threads),
                SystemPort = parse.GetValue(systemPort) ?? SystemPortFromEnvironment(),
                DrainTimeout = FrontendFlags.Seconds(parse.GetValue(drainTimeout)),
                SystemHost = parse.GetValue(systemHost) ?? SystemHostFromEnvironment(),
                MaxWaitingRequests = parse.GetValue(maxWaiting),
                IgnoredFlags = ignored,
                TensorParallel = tensor,
                DataParallel = data,
            }).Validate();
            if (settings.TensorParallel.Enabled)
            {
                settings = settings with { TensorParallelInitAddress = TensorParallelRanks.ResolveInitAddress(settings.TensorParallel) };
            }

            if (settings.EngineKind == "dynamo" && settings.ModelPath is null)
            {
                throw new CliUsageException("--model is required (or --engine echo / mocker)");
            }

            if (settings.TensorParallel.Enabled && settings.TensorParallel.Rank != 0)
            {
                return FollowAsync(settings, cancellationToken);
            }

            RuntimeOptions runtime = RuntimeConnection.FromEnvironment() with { LeaseTtl = TimeSpan.FromSeconds(ttl) };
            return RunAsync(settings, runtime, RuntimeConnection.ReadWaitForInfra(parse, waitForInfra), tracing.Read(parse, settings.IsPrefillWorker ? "dynamo-prefill-worker" : "dynamo-worker"), cancellationToken);
        });
        return command;
    }

    /// <summary>DYN_SYSTEM_HOST, as the original's workers read it; 127.0.0.1 when unset.</summary>
    internal static string SystemHostFromEnvironment() =>
        Environment.GetEnvironmentVariable("DYN_SYSTEM_HOST") is { } host && !string.IsNullOrWhiteSpace(host) ? host.Trim() : new WorkerSettings().SystemHost;

    internal static int? SystemPortFromEnvironment()
    {
        string? value = Environment.GetEnvironmentVariable("DYN_SYSTEM_PORT");
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int port) && port is > 0 and <= 65535
            ? port : throw new CliUsageException($"DYN_SYSTEM_PORT: '{value}' is not a port number");
    }

    /// <summary>A rank other than 0 of a tensor-parallel worker (and the ranks it starts on its node): no NATS or etcd.</summary>
    private static async Task<int> FollowAsync(WorkerSettings settings, CancellationToken cancellationToken)
    {
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        return await TensorParallelRanks.FollowAsync(settings, settings.TensorParallelInitAddress!, Console.Error, shutdown.Token);
    }

    private static async Task<int> RunAsync(WorkerSettings settings, RuntimeOptions runtimeOptions, TimeSpan? waitForInfra, TracingOptions tracing, CancellationToken cancellationToken)
    {
        using TracerProvider? tracer = CliTracing.Start(tracing, Console.Error, "worker");
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(runtimeOptions, waitForInfra, "worker", shutdown.Token);
        await using WorkerComponent worker = await WorkerComponent.StartAsync(runtime, settings, Console.Error, shutdown.Token, CliLogging.Create(json: false));
        try
        {
            Task stopped = Task.Delay(Timeout.Infinite, shutdown.Token);
            if (await Task.WhenAny(stopped, worker.RankLost) == worker.RankLost)
            {
                // The worker cannot compute without the lost rank: leave discovery now (disposal); in-flight requests ended with the error.
                Console.Error.WriteLine($"worker: instance {EndpointAddress.FormatId(runtime.InstanceId)}: {worker.RankLost.Result.Message}; leaving discovery and exiting");
                return 1;
            }
        }
        catch (OperationCanceledException)
        {
        }

        string id = EndpointAddress.FormatId(runtime.InstanceId);
        Console.Error.WriteLine($"worker: instance {id} draining: no new requests; {worker.InFlight} in flight get up to {settings.DrainTimeout.TotalSeconds:0.#} s to finish (a second signal stops at once)");
        try
        {
            int left = await worker.DrainAsync(settings.DrainTimeout, RuntimeConnection.ForcedShutdown);
            Console.Error.WriteLine(left == 0
                ? $"worker: instance {id} drained; shutting down"
                : $"worker: instance {id}: {left} requests still running are stopped; their frontends continue them on other workers");
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"worker: instance {id} stopping at once (second signal); {worker.InFlight} requests in flight move to other workers");
        }

        return 0;
    }
}

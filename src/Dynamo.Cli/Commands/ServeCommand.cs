using System.CommandLine;
using Dynamo.Cli.Components;
using Dynamo.Components.Processing;
using Dynamo.Components.Routing;
using Dynamo.Components.Workers;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Frontend.Status;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Runtime;
using OpenTelemetry.Trace;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo serve MODULE:Component -f CONFIG [--service-name NAME]</c>, as in the guides: starts the named
/// component and everything it links to in the graph (or, with --service-name, only that component),
/// each with its section of the config (plus Common), over etcd and NATS (NATS_SERVER / ETCD_ENDPOINTS,
/// localhost by default).
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var target = new Argument<string>("graph") { Description = "MODULE:Component, e.g. graphs.agg_router:Frontend or components.prefill_worker:PrefillWorker" };
        var config = new Option<string>("-f", "--config") { Description = "The config YAML: one section per component, plus Common", Required = true };
        var serviceName = new Option<string?>("--service-name") { Description = "Start only this component, ignoring its links" };
        var command = new Command("serve", "Start a deployment graph's components (graphs/*.yaml) with a config (configs/*.yaml)") { target, config, serviceName };
        Option<double?> waitForInfra = RuntimeConnection.AddWaitForInfra(command);
        TracingFlags tracing = TracingFlags.AddTo(command);
        command.SetAction((parse, cancellationToken) =>
        {
            string spec = parse.GetValue(target)!;
            int colon = spec.LastIndexOf(':');
            if (colon <= 0 || colon == spec.Length - 1)
            {
                throw new CliUsageException($"'{spec}' is not MODULE:Component (e.g. graphs.agg_router:Frontend)");
            }

            var bases = new List<string> { Directory.GetCurrentDirectory() };
            if (Environment.GetEnvironmentVariable("DYNAMO_HOME") is { Length: > 0 } home)
            {
                bases.Add(home);
            }

            ServeGraph graph = ServeGraph.Load(spec[..colon], bases);
            string? only = parse.GetValue(serviceName);
            IReadOnlyList<string> components = only is not null ? [graph.Closure(only)[0]] : graph.Closure(spec[(colon + 1)..]);
            ServeConfig settings = ServeConfig.Load(parse.GetValue(config)!);
            // One process, one service name: the component's when it runs alone (--service-name, or a graph of one).
            string service = components.Count == 1 ? $"dynamo-{components[0].ToLowerInvariant()}" : "dynamo-serve";
            return RunAsync(Bind(components, settings, Console.Error) with
            {
                WaitForInfra = RuntimeConnection.ReadWaitForInfra(parse, waitForInfra),
                Tracing = tracing.Read(parse, service),
            }, cancellationToken);
        });
        return command;
    }

    internal enum Kind
    {
        Frontend,
        Processor,
        Router,
        Worker,
        PrefillWorker,
    }

    internal static Kind KindOf(string component) => component switch
    {
        "Frontend" => Kind.Frontend,
        "Processor" => Kind.Processor,
        "Router" or "KvRouter" => Kind.Router,
        "PrefillWorker" => Kind.PrefillWorker,
        _ when component.EndsWith("Worker", StringComparison.Ordinal) => Kind.Worker,
        _ => throw new CliUsageException($"component '{component}': unknown kind (Frontend, Processor, Router, PrefillWorker, or a name ending in Worker)"),
    };

    /// <summary>What `serve` starts, every component's options bound from its config section and validated.</summary>
    internal sealed record Plan(
        IReadOnlyList<string> Components,
        IReadOnlyList<(WorkerSettings Settings, RuntimeOptions Runtime, int Replicas)> Workers,
        KvRouterOptions? Router,
        ProcessorOptions? Processor,
        int? ProcessorSystemPort,
        string ProcessorSystemHost,
        FrontendOptions? Frontend,
        RuntimeOptions Runtime)
    {
        /// <summary>How long the Processor component drains on SIGTERM (its section's drain-timeout, else 30 s).</summary>
        public TimeSpan ProcessorDrain { get; init; } = ComponentDrainTimeout;

        /// <summary>How long the Router component drains on SIGTERM (its section's drain-timeout, else 30 s).</summary>
        public TimeSpan RouterDrain { get; init; } = ComponentDrainTimeout;

        /// <summary>How long the components wait for NATS and etcd to answer (--wait-for-infra); null: not at all.</summary>
        public TimeSpan? WaitForInfra { get; init; }

        /// <summary>--otlp-endpoint and the OTEL_* environment: one tracer for every component of the process.</summary>
        public TracingOptions Tracing { get; init; } = TracingOptions.Default;
    }

    /// <summary>Binds each component's section (Common under it) into its options records; says at once what is started where, and which keys have no effect.</summary>
    internal static Plan Bind(IReadOnlyList<string> components, ServeConfig config, TextWriter log)
    {
        var kinds = components.ToDictionary(c => c, KindOf);
        RuntimeOptions runtime = RuntimeConnection.FromEnvironment();
        FrontendOptions? frontend = null;
        ComponentConfig? frontendConfig = null;
        var workers = new List<(WorkerSettings, RuntimeOptions, int)>();
        string? routerMode = null;
        KvRouterOptions kvRouter = KvRouterOptions.Default;
        bool startRouter = false;
        ComponentConfig? processor = null;
        string processorNamespace = ProcessorOptions.Default.Namespace;
        int? processorSystemPort = null;
        int? processorMigrationLimit = null;
        double? processorMigrationWait = null;
        string processorSystemHost = WorkerCommand.SystemHostFromEnvironment();
        TimeSpan processorDrain = ComponentDrainTimeout, routerDrain = ComponentDrainTimeout;
        foreach (string name in components)
        {
            ComponentConfig c = config.For(name);
            switch (kinds[name])
            {
                case Kind.Frontend:
                    frontend = FrontendOptions.Default with
                    {
                        HttpPort = c.Int("port") ?? c.Int("http_port") ?? FrontendOptions.Default.HttpPort,
                        Host = c.String("host") ?? c.String("http_host") ?? FrontendOptions.Default.Host,
                        MaxRequestBodyBytes = c.Long("max_request_body_bytes") ?? FrontendOptions.Default.MaxRequestBodyBytes,
                        MaxRequestHeaderBytes = c.Int("max_request_header_bytes") ?? FrontendOptions.Default.MaxRequestHeaderBytes,
                        MaxRequestHeaderCount = c.Int("max_request_headers") ?? FrontendOptions.Default.MaxRequestHeaderCount,
                        MaxRequestLineBytes = c.Int("max_request_line_bytes") ?? FrontendOptions.Default.MaxRequestLineBytes,
                        RequestHeadersTimeout = c.Double("request_headers_timeout") is double headers ? FrontendFlags.Seconds(headers) : FrontendOptions.Default.RequestHeadersTimeout,
                        MinRequestBodyBytesPerSecond = c.Double("min_request_body_rate") ?? FrontendOptions.Default.MinRequestBodyBytesPerSecond,
                        MinRequestBodyRateGracePeriod = c.Double("min_request_body_rate_grace") is double grace ? FrontendFlags.Seconds(grace) : FrontendOptions.Default.MinRequestBodyRateGracePeriod,
                        ApiKeys = HttpServerFlags.WithEnvironmentKey(c.String("api_key") is string key ? [key] : null),
                        ApiKeyFile = c.String("api_key_file"),
                        MetricsRequireApiKey = c.Bool("metrics_require_api_key") ?? false,
                        TlsCertificateFile = c.String("tls_cert_file"),
                        TlsKeyFile = c.String("tls_key_file"),
                        ShutdownDrainTimeout = c.Double("shutdown_drain_timeout") is double frontendDrain ? FrontendFlags.Seconds(frontendDrain) : FrontendOptions.Default.ShutdownDrainTimeout,
                        Processing = ProcessorOptions.Default with
                        {
                            Namespace = c.String("namespace") ?? ProcessorOptions.Default.Namespace,
                            RouterMode = c.String("router_mode") ?? ProcessorOptions.Default.RouterMode,
                            MigrationLimit = c.Int("migration_limit") ?? ProcessorOptions.Default.MigrationLimit,
                            MigrationWaitTimeout = c.Double("migration_wait") is double fw ? FrontendFlags.Seconds(fw) : ProcessorOptions.Default.MigrationWaitTimeout,
                        },
                        Admission = AdmissionFlags.FromConfig(c),
                    };
                    frontendConfig = c;
                    break;
                case Kind.Processor:
                    routerMode ??= c.String("router") ?? c.String("router_mode");
                    processorNamespace = c.String("namespace") ?? ProcessorOptions.Default.Namespace;
                    processorSystemPort = c.Int("system_port");
                    processorMigrationLimit = c.Int("migration_limit");
                    processorMigrationWait = c.Double("migration_wait");
                    processorSystemHost = c.String("system_host") ?? processorSystemHost;
                    processorDrain = DrainFromConfig(c) ?? processorDrain;
                    _ = c.Validated(() => System.Net.IPAddress.TryParse(processorSystemHost, out _) ? processorSystemHost
                        : throw new ArgumentException($"system-host: '{processorSystemHost}' is not an IP address (127.0.0.1 for this host only, 0.0.0.0 for every interface)"));
                    processor = c;
                    log.WriteLine($"serve: {name}: chat template, tokenizer, routing and detokenization run in the Processor component ({processorNamespace}.processor.generate); frontends relay to it");
                    break;
                case Kind.Router:
                    routerMode = c.String("router_mode") ?? c.String("router") ?? routerMode ?? RouterModes.Kv;
                    kvRouter = kvRouter with
                    {
                        OverlapScoreWeight = c.Double("kv_overlap_score_weight") ?? kvRouter.OverlapScoreWeight,
                        Temperature = c.Double("router_temperature") ?? kvRouter.Temperature,
                        MaxQueue = c.Int("router_max_queue") ?? kvRouter.MaxQueue,
                        QueueTimeout = c.Double("router_queue_timeout") is double rq ? FrontendFlags.Seconds(rq) : kvRouter.QueueTimeout,
                        BlockSize = c.Int("block_size") ?? kvRouter.BlockSize,
                        UseKvEvents = c.Bool("no_kv_events") is bool noEvents ? !noEvents : kvRouter.UseKvEvents,
                        PrefixTtl = c.Double("router_prefix_ttl") is double ttl ? FrontendFlags.Seconds(ttl) : kvRouter.PrefixTtl,
                        ReplicaHeartbeat = c.Double("router_replica_heartbeat") is double beat ? FrontendFlags.Seconds(beat) : kvRouter.ReplicaHeartbeat,
                        PeerChargeTtl = c.Double("router_peer_charge_ttl") is double peerTtl ? FrontendFlags.Seconds(peerTtl) : kvRouter.PeerChargeTtl,
                    };
                    c.Validated(kvRouter.Validate);
                    routerDrain = DrainFromConfig(c) ?? routerDrain;
                    startRouter = true;
                    log.WriteLine($"serve: {name}: the KV router runs as its own component (dynamo.router.route), shared by every kv frontend; it predicts the workers' caches from {KvRouterFlags.CacheSource(kvRouter)}");
                    break;
                default:
                    workers.Add((WorkerFromConfig(c, kinds[name] == Kind.PrefillWorker), runtime with { LeaseTtl = TimeSpan.FromSeconds(c.Int("lease_ttl") ?? 10) }, c.Replicas()));
                    break;
            }

            foreach (string key in c.Unused())
            {
                log.WriteLine($"serve: WARNING: {config.Source}: {name}.{key} is accepted but has no effect here");
            }
        }

        // A Processor or Router section decides how the frontend routes, when it does so itself.
        if (frontend is not null && routerMode is not null)
        {
            frontend = frontend with { Processing = frontend.Processing with { RouterMode = routerMode, KvRouter = kvRouter } };
        }

        (workers, processorSystemPort) = WithEnvironmentSystemPort(components, kinds, workers, processor is null ? null : processorSystemPort, log);
        ProcessorOptions? processing = processor?.Validated(() => (ProcessorOptions.Default with
        {
            Namespace = processorNamespace,
            RouterMode = routerMode ?? ProcessorOptions.Default.RouterMode,
            KvRouter = kvRouter,
            MigrationLimit = processorMigrationLimit ?? ProcessorOptions.Default.MigrationLimit,
            MigrationWaitTimeout = processorMigrationWait is double pw ? FrontendFlags.Seconds(pw) : ProcessorOptions.Default.MigrationWaitTimeout,
        }).Validate());
        return new Plan(components, workers, startRouter ? kvRouter : null, processing, processorSystemPort, processorSystemHost, frontend is null ? null : frontendConfig!.Validated(frontend.Validate), runtime)
        {
            ProcessorDrain = processorDrain,
            RouterDrain = routerDrain,
        };
    }

    /// <summary>
    /// DYN_SYSTEM_PORT, as `dynamo worker` reads it: the system port (/metrics, /health, /live) of this process's first
    /// worker (its first replica) whose section sets no system-port, else of its Processor when it has no worker. A
    /// section's own system-port wins; one port serves one component, and the startup line says which.
    /// </summary>
    private static (List<(WorkerSettings, RuntimeOptions, int)> Workers, int? ProcessorSystemPort) WithEnvironmentSystemPort(
        IReadOnlyList<string> components, Dictionary<string, Kind> kinds, List<(WorkerSettings Settings, RuntimeOptions Runtime, int Replicas)> workers, int? processorSystemPort, TextWriter log)
    {
        if (WorkerCommand.SystemPortFromEnvironment() is not int port)
        {
            return (workers, processorSystemPort);
        }

        string[] workerNames = [.. components.Where(c => kinds[c] is Kind.Worker or Kind.PrefillWorker)];
        int target = workers.FindIndex(w => w.Settings.SystemPort is null);
        if (target >= 0)
        {
            var (settings, runtime, replicas) = workers[target];
            var result = new List<(WorkerSettings, RuntimeOptions, int)>(workers);
            result[target] = (settings with { SystemPort = port }, runtime, 1);
            if (replicas > 1)
            {
                result.Insert(target + 1, (settings, runtime, replicas - 1));
            }

            log.WriteLine($"serve: DYN_SYSTEM_PORT {port}: the system port of {workerNames[target]}{(replicas > 1 ? " (its first replica)" : "")}{(workers.Count + replicas > 2 ? "; the other workers of this process have none unless their sections set system-port" : "")}");
            return (result, processorSystemPort);
        }

        if (workers.Count == 0 && processorSystemPort is null && components.Any(c => kinds[c] == Kind.Processor))
        {
            log.WriteLine($"serve: DYN_SYSTEM_PORT {port}: the system port of the Processor");
            return (workers, port);
        }

        log.WriteLine($"serve: DYN_SYSTEM_PORT {port} is not used: {(workers.Count > 0 ? "every worker's section sets its own system-port" : "no worker or Processor runs in this process")}");
        return (workers, processorSystemPort);
    }

    private static async Task<int> RunAsync(Plan plan, CancellationToken cancellationToken)
    {
        TextWriter log = Console.Error;
        using TracerProvider? tracer = CliTracing.Start(plan.Tracing, log, "serve");
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        var started = new List<IAsyncDisposable>();
        try
        {
            foreach (var (settings, workerRuntime, replicas) in plan.Workers)
            {
                for (int i = 0; i < replicas; i++)
                {
                    DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(workerRuntime, plan.WaitForInfra, "serve", shutdown.Token);
                    started.Add(runtime);
                    started.Add(await WorkerComponent.StartAsync(runtime, settings, log, shutdown.Token, CliLogging.Create(json: plan.Frontend?.JsonLogs ?? false)));
                }
            }

            if (plan.Router is KvRouterOptions kvRouter)
            {
                DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(plan.Runtime, plan.WaitForInfra, "serve", shutdown.Token);
                started.Add(runtime);
                started.Add(await RouterServer.StartAsync(runtime, new EndpointAddress("dynamo", "backend", "generate"), kvRouter, cancellationToken: shutdown.Token));
            }

            if (plan.Processor is ProcessorOptions processing)
            {
                DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(plan.Runtime, plan.WaitForInfra, "serve", shutdown.Token);
                started.Add(runtime);
                ProcessorServer processor = await ProcessorServer.StartAsync(runtime, processing, CliLogging.Create(json: plan.Frontend?.JsonLogs ?? false), shutdown.Token);
                started.Add(processor);
                log.WriteLine($"serve: processor serving {processor.Address} (router {processing.RouterMode})");
                if (plan.ProcessorSystemPort is int port)
                {
                    SystemStatusServer status = await SystemStatusServer.StartAsync(processor, plan.ProcessorSystemHost, port, shutdown.Token);
                    started.Add(status);
                    log.WriteLine($"serve: processor /metrics, /health and /live on {Listeners.Describe(plan.ProcessorSystemHost, status.BaseAddress.Port, "system-host")}");
                }
            }

            if (plan.Frontend is FrontendOptions frontend)
            {
                DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(plan.Runtime, plan.WaitForInfra, "serve", shutdown.Token);
                started.Add(runtime);
                FrontendServer server = await FrontendServer.StartAsync(runtime, frontend, CliLogging.Create(frontend.JsonLogs), shutdown.Token);
                started.Add(server);
                log.WriteLine($"serve: frontend listening on {Listeners.Describe(frontend.Host, server.BaseAddress.Port, "host")} ({server.AccessNote})");
            }

            log.WriteLine($"serve: started {string.Join(", ", plan.Components)}; Ctrl-C stops");
            try
            {
                await Task.Delay(Timeout.Infinite, shutdown.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
        finally
        {
            // Frontend first (it finishes its streams), then the workers drain together (graceful: requests of
            // other frontends finish or move), leave discovery, and their runtimes revoke their leases.
            bool drained = false;
            for (int i = started.Count - 1; i >= 0; i--)
            {
                // The Processor and Router components drain too: other frontends' requests finish or go elsewhere.
                Task<long>? component = started[i] switch
                {
                    ProcessorServer p => p.DrainAsync(plan.ProcessorDrain, RuntimeConnection.ForcedShutdown),
                    RouterServer r => r.DrainAsync(plan.RouterDrain, RuntimeConnection.ForcedShutdown),
                    _ => null,
                };
                if (component is not null)
                {
                    try
                    {
                        long left = await component;
                        log.WriteLine($"serve: {(started[i] is ProcessorServer ? "processor" : "router")} drained{(left == 0 ? "" : $" ({left} requests still in flight are stopped)")}");
                    }
                    catch (OperationCanceledException)
                    {
                        log.WriteLine("serve: stopping at once (second signal)");
                    }
                }

                if (!drained && started[i] is WorkerComponent)
                {
                    drained = true;
                    WorkerComponent[] workerComponents = [.. started.OfType<WorkerComponent>()];
                    TimeSpan drain = plan.Workers.Count == 0 ? TimeSpan.Zero : plan.Workers.Max(w => w.Settings.DrainTimeout);
                    log.WriteLine($"serve: {workerComponents.Length} workers draining ({workerComponents.Sum(w => w.InFlight)} requests in flight, up to {drain.TotalSeconds:0.#} s; a second signal stops at once)");
                    try
                    {
                        await Task.WhenAll(workerComponents.Select(w => w.DrainAsync(drain, RuntimeConnection.ForcedShutdown)));
                    }
                    catch (OperationCanceledException)
                    {
                        log.WriteLine("serve: stopping at once (second signal)");
                    }
                }

                await started[i].DisposeAsync();
            }
        }

        return 0;
    }

    private static WorkerSettings WorkerFromConfig(ComponentConfig c, bool prefill)
    {
        var ignored = new List<string>();
        TensorParallelSettings parallel;
        try
        {
            parallel = TensorParallelSettings.None.WithSizes(
                c.Int("tensor_parallel_size") ?? c.Int("tp") ?? c.Int("tp_size") ?? 1,
                c.Int("pipeline_parallel_size") ?? c.Int("pp") ?? c.Int("pp_size") ?? 1);
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }

        parallel = parallel with
        {
            MicroBatches = c.Int("pp_micro_batches"),
            Nodes = c.Int("nnodes") ?? 1,
            NodeRank = c.Int("node_rank") ?? 0,
            InitAddress = c.String("dist_init_addr"),
            Transport = c.String("tp_transport") ?? "auto",
            Timeout = c.Double("dist_timeout") is double t ? FrontendFlags.Seconds(t) : TensorParallelSettings.None.Timeout,
            RankTimeout = c.Double("rank_timeout") is double rt ? FrontendFlags.Seconds(rt) : TensorParallelSettings.None.RankTimeout,
        };

        TensorParallelSettings tensor;
        DataParallelSettings data;
        try
        {
            (tensor, data) = DataParallelSettings.Resolve(parallel, c.Int("dp_size") ?? c.Int("data_parallel_size") ?? 1, c.Bool("enable_dp_attention") ?? false);
        }
        catch (ArgumentException e)
        {
            throw new CliUsageException(e.Message);
        }

        string engineKind = c.String("engine") ?? "dynamo";
        string? model = c.String("model") ?? c.String("model_path");
        bool useDefault = model is null && engineKind == "dynamo";
        var settings = new WorkerSettings
        {
            ModelPath = useDefault ? DefaultModel.EnsurePath(c.Int("context_length") ?? c.Int("max_model_len")) : model,
            TokenizerPath = c.String("tokenizer"),
            ServedModelName = c.String("served_model_name") ?? (useDefault ? DefaultModel.ServedName : null),
            EngineKind = engineKind,
            Address = new EndpointAddress(c.String("namespace") ?? "dynamo", c.String("component") ?? (prefill ? "prefill" : "backend"), c.String("endpoint") ?? "generate"),
            IsPrefillWorker = prefill,
            Engine = EngineOptions.Default with
            {
                BlockSize = c.Int("block_size") ?? EngineOptions.Default.BlockSize,
                MaxNumSeqs = c.Int("max_num_seqs") ?? EngineOptions.Default.MaxNumSeqs,
                MaxNumBatchedTokens = c.Int("max_num_batched_tokens") ?? EngineOptions.Default.MaxNumBatchedTokens,
                KvCacheMemory = c.Long("kv_cache_memory"),
                KvCacheMemoryFraction = c.Double("gpu_memory_utilization") ?? c.Double("mem_fraction_static") ?? EngineOptions.Default.KvCacheMemoryFraction,
                ContextLength = c.Int("context_length") ?? c.Int("max_model_len"),
                MaxStepMs = c.Double("max_step_ms"),
                PrefixCaching = c.Bool("enable_prefix_caching") ?? EngineOptions.Default.PrefixCaching,
                KvCacheDtype = c.String("kv_cache_dtype") is string kvDtype ? c.Validated(() => KvCacheDtypes.Parse(kvDtype)) : EngineOptions.Default.KvCacheDtype,
            },
            Mocker = MockerOptions.Default with
            {
                SpeedupRatio = c.Double("speedup_ratio") ?? MockerOptions.Default.SpeedupRatio,
                NumGpuBlocks = c.Int("num_gpu_blocks") ?? MockerOptions.Default.NumGpuBlocks,
            },
            Threads = c.Int("threads") ?? Environment.ProcessorCount,
            SystemPort = c.Int("system_port"),
            DrainTimeout = c.Double("drain_timeout") is double drain ? FrontendFlags.Seconds(drain) : TimeSpan.FromSeconds(30),
            SystemHost = c.String("system_host") ?? WorkerCommand.SystemHostFromEnvironment(),
            MaxWaitingRequests = c.Int("max_waiting_requests") ?? EngineWorkerOptions.Default.MaxWaitingRequests,
            IgnoredFlags = ignored,
            TensorParallel = tensor,
            DataParallel = data,
            RemotePrefill = c.Bool("remote_prefill") ?? true,
            Disaggregation = DisaggregationFromConfig(c),
            TransferBackend = c.String("disaggregation_transfer_backend") ?? "tcp",
            KvTransferHost = c.String("kv_transfer_host"),
            KvTransferPort = c.Int("kv_transfer_port") ?? 0,
        };
        return c.Validated(settings.Validate);
    }

    /// <summary>The decode side's thresholds of a worker section (conditional-disagg, max-local-prefill-length, max-prefill-queue-size), null when it names none.</summary>
    private static DisaggregationSettings? DisaggregationFromConfig(ComponentConfig c) =>
        DisaggregationSettings.FromGiven(c.Bool("conditional_disagg"), c.Int("max_local_prefill_length"), c.Int("max_prefill_queue_size"));

    /// <summary>How long a Processor or Router component's requests in flight may take to end on SIGTERM, unless its section's drain-timeout says.</summary>
    private static readonly TimeSpan ComponentDrainTimeout = TimeSpan.FromSeconds(30);

    /// <summary>A Processor or Router section's drain-timeout (seconds, 0..3600), null when not given.</summary>
    private static TimeSpan? DrainFromConfig(ComponentConfig c) =>
        c.Double("drain_timeout") is double seconds
            ? c.Validated(() => seconds is >= 0 and <= 3600 ? TimeSpan.FromSeconds(seconds) : throw new ArgumentException($"drain-timeout: {seconds} s is outside 0..3600 s"))
            : null;
}

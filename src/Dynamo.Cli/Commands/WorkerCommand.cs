using System.CommandLine;
using System.Globalization;
using Dynamo.Cli.Components;
using Dynamo.Components.Workers;
using Dynamo.Mocker;
using Dynamo.Runtime;

namespace Dynamo.Cli.Commands;

/// <summary>
/// <c>dynamo worker</c>: loads a model, connects to etcd and NATS (NATS_SERVER, ETCD_ENDPOINTS; localhost
/// by default), serves the engine on namespace.component.generate, publishes the model card, and runs
/// until Ctrl-C / SIGTERM, then leaves discovery at once. Accepts the guides' vLLM and SGLang spellings.
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
        var tp = new Option<int>("--tensor-parallel-size", "--tp", "--tp-size") { Description = "Accepted for the guides; this engine runs one process per model", DefaultValueFactory = _ => 1 };
        var ignoredValues = new[] { "--dp-size", "--nnodes", "--node-rank", "--dist-init-addr", "--pipeline-parallel-size" }
            .Select(n => new Option<string?>(n) { Description = "Accepted for the guides; no effect here (said at startup)" }).ToArray();
        var ignoredSwitches = new[] { "--trust-remote-code", "--skip-tokenizer-init", "--enforce-eager", "--enable-dp-attention" }
            .Select(n => new Option<bool>(n) { Description = "Accepted for the guides; no effect here (said at startup)" }).ToArray();
        var command = new Command("worker", "Serve a model's engine to the rest of the system over etcd and NATS (NATS_SERVER, ETCD_ENDPOINTS)")
        {
            model, tokenizer, servedName, engine, ns, component, endpoint, prefill, disaggregation,
        };
        EngineFlags engineFlags = EngineFlags.AddTo(command);
        DisaggregationFlags disaggFlags = DisaggregationFlags.AddTo(command);
        foreach (Option o in new Option[] { threads, leaseTtl, drainTimeout, maxWaiting, systemPort, systemHost, speedup, gpuBlocks, tp })
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
            int tpSize = parse.GetValue(tp);
            if (tpSize < 1)
            {
                throw new CliUsageException($"--tensor-parallel-size: {tpSize} must be at least 1");
            }

            if (tpSize > 1)
            {
                ignored.Add($"--tensor-parallel-size {tpSize} (one process serves the whole model)");
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
                },
                Threads = parse.GetValue(threads),
                SystemPort = parse.GetValue(systemPort) ?? SystemPortFromEnvironment(),
                DrainTimeout = FrontendFlags.Seconds(parse.GetValue(drainTimeout)),
                SystemHost = parse.GetValue(systemHost) ?? SystemHostFromEnvironment(),
                MaxWaitingRequests = parse.GetValue(maxWaiting),
                IgnoredFlags = ignored,
            }).Validate();
            if (settings.EngineKind == "dynamo" && settings.ModelPath is null)
            {
                throw new CliUsageException("--model is required (or --engine echo / mocker)");
            }

            RuntimeOptions runtime = RuntimeConnection.FromEnvironment() with { LeaseTtl = TimeSpan.FromSeconds(ttl) };
            return RunAsync(settings, runtime, cancellationToken);
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

    private static async Task<int> RunAsync(WorkerSettings settings, RuntimeOptions runtimeOptions, CancellationToken cancellationToken)
    {
        using CancellationTokenSource shutdown = RuntimeConnection.ShutdownSignal(cancellationToken);
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(runtimeOptions, shutdown.Token);
        await using WorkerComponent worker = await WorkerComponent.StartAsync(runtime, settings, Console.Error, shutdown.Token, CliLogging.Create(json: false));
        try
        {
            await Task.Delay(Timeout.Infinite, shutdown.Token);
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

using System.Diagnostics;
using Dynamo.Components.KvTransfer;
using Dynamo.Components.ModelCards;
using Dynamo.Components.Registry;
using Dynamo.Components.Workers;
using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Frontend.Status;
using Dynamo.Llm.Engines;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.Parallel;
using Dynamo.Llm.Scheduling;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Cli.Components;

/// <summary>
/// A running worker: an engine (built-in, echo or mocker) served on the runtime with its model card,
/// KV events and load. Disposing leaves discovery first, then stops the engine.
/// </summary>
internal sealed class WorkerComponent : IAsyncDisposable
{
    private readonly IEngine[] _engines;
    private readonly EngineWorker _worker;
    private readonly LoadedModel? _model;
    private readonly KvTransferServer? _transfer;
    private SystemStatusServer? _status;
    private ICollectiveGroup? _group;
    private List<Process> _ranks = [];

    private WorkerComponent(IEngine[] engines, EngineWorker worker, LoadedModel? model, ModelDeploymentCard card, KvTransferServer? transfer)
    {
        _transfer = transfer;
        _engines = engines;
        _worker = worker;
        _model = model;
        Card = card;
    }

    /// <summary>The worker's /metrics, /health and /live address, when it has a system port.</summary>
    public Uri? StatusAddress => _status?.BaseAddress;

    public ModelDeploymentCard Card { get; }

    /// <summary>The engine (the first data-parallel rank's, with --dp-size).</summary>
    public IEngine Engine => _engines[0];

    /// <summary>Every engine replica, by data-parallel rank from this node's first.</summary>
    public IReadOnlyList<IEngine> Engines => _engines;

    public long InstanceId => _worker.InstanceId;

    /// <summary>The engine served as an endpoint (its counters are the worker's metrics).</summary>
    public EngineWorker Worker => _worker;

    /// <summary>
    /// Completes when a rank of this tensor-parallel worker is lost (with the error naming it); never otherwise. The
    /// worker cannot serve after that and should stop.
    /// </summary>
    public Task<CollectiveException> RankLost => _engines[0] is InferenceEngine { } e ? e.GroupLost : new TaskCompletionSource<CollectiveException>().Task;

    /// <summary>Requests this worker is serving now.</summary>
    public int InFlight => _worker.InFlight;

    public static async Task<WorkerComponent> StartAsync(DistributedRuntime runtime, WorkerSettings settings, TextWriter log, CancellationToken cancellationToken = default, ILoggerFactory? loggers = null)
    {
        ILogger logger = (loggers ?? NullLoggerFactory.Instance).CreateLogger("Dynamo.Worker");
        foreach (string flag in settings.IgnoredFlags)
        {
            log.WriteLine($"worker: WARNING: {flag} is accepted for compatibility with the guides but has no effect here");
        }

        if (settings.TensorParallel is { Enabled: true, Pipeline: true } && settings.RemotePrefill)
        {
            // Importing KV into every stage's layers is not built yet: such a worker prefills every prompt itself.
            settings = settings with { RemotePrefill = false };
            log.WriteLine("worker: --pipeline-parallel-size: this worker takes no remote prefills (KV transfer with pipeline parallelism is not supported yet)");
        }

        if (settings.TransferBackend == "nixl")
        {
            log.WriteLine("worker: --disaggregation-transfer-backend nixl: KV moves over the built-in TCP transfer here (there is no NIXL)");
        }

        LoadedModel? model = null;
        ICollectiveGroup? parallelGroup = null;
        List<Process> ranks = [];
        var engines = new List<IEngine>();
        ModelCardSource source;
        DataParallelSettings dp = settings.DataParallel;
        if (dp.Enabled)
        {
            log.WriteLine($"worker: data parallelism: {dp.LocalSize} engine replicas here (ranks {dp.FirstLocalRank}..{dp.FirstLocalRank + dp.LocalSize - 1} of {dp.Size}), " +
                $"each its own KV cache and routing target, {settings.ThreadsPerReplica} kernel threads each" +
                (settings.TensorParallel.InitAddress is null && dp.Nodes == 1 ? "" : "; replicas need no rendezvous, so --dist-init-addr is not used"));
        }
        try
        {
            switch (settings.EngineKind)
            {
                case "dynamo":
                {
                    string path = settings.ModelPath ?? throw new CliUsageException("--model is required for the built-in engine");
                    model = LoadedModel.Load(path, settings.TokenizerPath);
                    KernelThreads.Count = settings.Threads;
                    if (dp.Enabled)
                    {
                        // Replicas share the mapped weights; each has its own scratch, KV pool share and kernel threads.
                        EngineOptions replica = settings.Engine with
                        {
                            WorkerId = runtime.InstanceId,
                            KernelThreads = settings.ThreadsPerReplica,
                            KvCacheMemory = settings.Engine.KvCacheMemory / dp.LocalSize,
                            KvCacheMemoryFraction = settings.Engine.KvCacheMemoryFraction / dp.LocalSize,
                        };
                        for (int r = 0; r < dp.LocalSize; r++)
                        {
                            var replicaModel = new Transformer(model.Weights, maxBatch: TensorParallelRanks.MaxBatch(settings));
                            replicaModel.WarmUp(TimeSpan.FromMilliseconds(200), replica.KvCacheDtype);
                            engines.Add(new InferenceEngine(replicaModel, model.Tokenizer.EosTokenIds, replica with { StepCostSeed = replicaModel.MeasureStepCost() }));
                        }

                        var first = (InferenceEngine)engines[0];
                        log.WriteLine($"worker: KV cache of each replica {first.KvBudget}");
                        (string dpFormat, string dpTokenizer) = TokenizerSource(model, path, settings.TokenizerPath);
                        source = new ModelCardSource(settings.Name, dpFormat, dpTokenizer, first.ContextLength, first.BlockSize, model.Config.VocabSize);
                        break;
                    }

                    Transformer transformer;
                    if (settings.TensorParallel.Enabled && settings.TensorParallel.Rank != 0)
                    {
                        throw new CliUsageException($"--node-rank {settings.TensorParallel.NodeRank}: a worker component runs rank 0 of its tensor-parallel group (node 0); start the ranks of node {settings.TensorParallel.NodeRank} with `./dynamo worker ... --node-rank {settings.TensorParallel.NodeRank}`");
                    }

                    if (settings.TensorParallel.Enabled)
                    {
                        // Rank 0 of a tensor- or pipeline-parallel worker: starts its node's other ranks, loads its part, drives their passes.
                        string initAddress = settings.TensorParallelInitAddress ?? TensorParallelRanks.ResolveInitAddress(settings.TensorParallel);
                        ranks = TensorParallelRanks.StartLocalRanks(settings, model.Config, initAddress, log);
                        (IModelWeights part, ICollectiveGroup group) = await TensorParallelRanks.LoadAndJoinAsync(
                            settings.TensorParallel, initAddress, path, model.Weights, log, cancellationToken).ConfigureAwait(false);
                        parallelGroup = group;
                        transformer = new Transformer(part, TensorParallelRanks.MaxBatch(settings), group);
                        if (settings.TensorParallel.Pipeline)
                        {
                            transformer.MicroBatches = settings.TensorParallel.MicroBatches ?? settings.TensorParallel.Size;
                            log.WriteLine($"worker: pipeline of {settings.TensorParallel.Size} stages; each forward pass is cut into up to {transformer.MicroBatches} micro-batches");
                        }
                        else
                        {
                            // A prefill worker's ranks each push their own KV heads to the decode worker (one part each).
                            transformer.KvSender = new KvTransferClient();
                            transformer.KvPushTimeout = TensorParallelRanks.KvPushTimeout(settings.TensorParallel);
                        }
                    }
                    else
                    {
                        transformer = new Transformer(model.Weights, maxBatch: TensorParallelRanks.MaxBatch(settings));
                    }

                    TimeSpan warm = transformer.WarmUp(TimeSpan.FromMilliseconds(500), settings.Engine.KvCacheDtype);
                    StepCost seed = transformer.MeasureStepCost();
                    log.WriteLine($"worker: kernels warmed up in {warm.TotalMilliseconds:F0} ms (throw-away forward passes before the first request); " +
                        $"a step costs about {seed.StepMs:F1} ms + {seed.PrefillMsPerToken:F2} ms a token (the first estimate of the step-time budget's cost model)");
                    var inference = new InferenceEngine(transformer, model.Tokenizer.EosTokenIds, settings.Engine with { WorkerId = runtime.InstanceId, StepCostSeed = seed });
                    log.WriteLine($"worker: KV cache {inference.KvBudget}");
                    engines.Add(inference);
                    (string format, string tokenizerPath) = TokenizerSource(model, path, settings.TokenizerPath);
                    source = new ModelCardSource(settings.Name, format, tokenizerPath, inference.ContextLength, inference.BlockSize, model.Config.VocabSize);
                    break;
                }

                case "echo":
                {
                    EchoEngineOptions echo = EchoEngineOptions.Default with
                    {
                        BlockSize = settings.Engine.BlockSize,
                        MaxNumSeqs = settings.Engine.MaxNumSeqs,
                        ContextLength = settings.Engine.ContextLength ?? EchoEngineOptions.Default.ContextLength,
                        NumGpuBlocks = settings.Mocker.NumGpuBlocks,
                    };
                    source = ModelFreeEngine(settings, engines, _ => new EchoEngine(echo));
                    break;
                }

                case "mocker":
                {
                    // Synthetic tokens come from the served tokenizer's vocabulary, so that they decode to text.
                    source = ModelFreeEngine(settings, engines, vocab => new MockerEngine(settings.MockerFor(vocab, runtime.InstanceId).Validate()));
                    break;
                }

                default:
                    throw new CliUsageException($"--engine: '{settings.EngineKind}' is not dynamo, echo or mocker");
            }
        }
        catch
        {
            foreach (IEngine e in engines)
            {
                await e.DisposeAsync().ConfigureAwait(false);
            }

            parallelGroup?.Dispose();
            model?.Dispose();
            TensorParallelRanks.Kill(ranks);
            throw;
        }

        IEngine engine = engines[0];

        KvTransferServer? transfer = null;
        try
        {
            // Aggregated and decode workers receive prefilled KV on their transfer port; prefill workers only send.
            transfer = settings.IsPrefillWorker || !settings.RemotePrefill ? null : KvTransferServer.Start(KvTransferServerOptions.Default with
            {
                BindAddress = settings.KvTransferBinding.Bind,
                Port = settings.KvTransferPort,
                AdvertisedHost = settings.KvTransferBinding.Advertised,
                AdvertiseToward = runtime.Discovery.Name == "memory" ? null : runtime.Discovery.Address,

                // Safe: the decode side keeps each ticket until the engine has imported its payload.
                PoolBuffers = true,
            }, logger);
            EngineWorker worker = await EngineWorker.StartAsync(runtime, engines, settings.Address, EngineWorkerOptions.Default with
            {
                KvTransfer = transfer,
                ModelFingerprint = Fingerprint(settings),
                MaxWaitingRequests = settings.MaxWaitingRequests,
                FirstDpRank = dp.FirstLocalRank,
                DataParallel = dp.Enabled,
            }, logger, cancellationToken).ConfigureAwait(false);
            if (!settings.IsPrefillWorker && settings.Disaggregation is { } thresholds)
            {
                await DisaggregationSettingsStore.PutAsync(runtime.Discovery, settings.Address.Namespace, source.ServedName, thresholds, cancellationToken).ConfigureAwait(false);
                log.WriteLine($"worker: disaggregation settings of '{source.ServedName}': conditional {thresholds.ConditionalDisagg}, max local prefill length {thresholds.MaxLocalPrefillLength}, max prefill queue size {thresholds.MaxPrefillQueueSize} (change them at run time with ./dynamo disagg)");
            }

            string role = settings.IsPrefillWorker ? "prefill" : "aggregated";
            ModelDeploymentCard card = await ModelCardStore.PublishAsync(runtime, settings.Address, source, role, cancellationToken, settings.RemotePrefill).ConfigureAwait(false);
            log.WriteLine(
                $"worker: instance {EndpointAddress.FormatId(runtime.InstanceId)} serving {settings.Address} for model '{card.Name}' with the {engine.Name} engine " +
                $"(context {card.ContextLength}, KV {worker.Stats.KvBlocksTotal} blocks of {card.KvBlockSize}" +
                (dp.Enabled ? $" over {engines.Count} data-parallel ranks {dp.FirstLocalRank}..{dp.FirstLocalRank + engines.Count - 1}" : "") +
                $"; {runtime.Mode}: {runtime.Discovery.Address})");
            log.WriteLine(settings.IsPrefillWorker
                ? "worker: prefill worker: prefills prompts for decode workers and pushes their KV over TCP; it takes no request of its own"
                : transfer is null
                    ? "worker: remote prefill off: this worker prefills every prompt itself"
                    : $"worker: KV from prefill workers arrives at {transfer.Address}, listening on {Listeners.Describe(transfer.LocalEndPoint.Address.ToString(), transfer.LocalEndPoint.Port, "--kv-transfer-host")}");
            var component = new WorkerComponent([.. engines], worker, model, card, transfer) { _group = parallelGroup, _ranks = ranks };
            if (settings.SystemPort is int port)
            {
                try
                {
                    component._status = await SystemStatusServer.StartAsync(worker, card.Name, settings.SystemHost, port, cancellationToken).ConfigureAwait(false);
                }
                catch (IOException e)
                {
                    await component.DisposeAsync().ConfigureAwait(false);
                    throw new CliUsageException($"--system-port {port}: {e.Message}");
                }

                log.WriteLine($"worker: /metrics, /health and /live on {Listeners.Describe(settings.SystemHost, component._status.BaseAddress.Port, "--system-host")}");
            }

            return component;
        }
        catch
        {
            foreach (IEngine e in engines)
            {
                await e.DisposeAsync().ConfigureAwait(false);
            }

            if (transfer is not null)
            {
                await transfer.DisposeAsync().ConfigureAwait(false);
            }

            model?.Dispose();
            parallelGroup?.Dispose();
            TensorParallelRanks.Kill(ranks);
            throw;
        }
    }

    /// <summary>
    /// Graceful drain (<see cref="EngineWorker.DrainAsync"/>): no new requests, the ones in flight finish within
    /// <paramref name="timeout"/>; returns how many were left. Dispose afterwards.
    /// </summary>
    public Task<int> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default) => _worker.DrainAsync(timeout, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (_status is not null)
        {
            await _status.DisposeAsync().ConfigureAwait(false);
        }

        await _worker.DisposeAsync().ConfigureAwait(false);
        foreach (IEngine engine in _engines)
        {
            await engine.DisposeAsync().ConfigureAwait(false);
        }

        if (_transfer is not null)
        {
            await _transfer.DisposeAsync().ConfigureAwait(false);
        }

        _model?.Dispose();
        _group?.Dispose();

        // The other ranks of this node stopped when the engine did (or saw the group close).
        await TensorParallelRanks.WaitForAsync(_ranks, Console.Error).ConfigureAwait(false);
    }

    /// <summary>What a decode worker and a prefill worker compare before moving KV: the weights, or the model-free engine's kind.</summary>
    private static string Fingerprint(WorkerSettings settings) =>
        settings.EngineKind == "dynamo" && settings.ModelPath is { } path ? ModelFingerprint.Of(path) : settings.EngineKind;

    /// <summary>
    /// Echo and mocker engines have no model files: they serve the tokenizer of --model/--tokenizer when
    /// given, else the default model's (so chat requests work end to end).
    /// </summary>
    private static ModelCardSource ModelFreeEngine(WorkerSettings settings, List<IEngine> engines, Func<int, IEngine> create)
    {
        string path = settings.TokenizerPath ?? settings.ModelPath ?? DefaultModel.EnsurePath();
        using LoadedModel model = LoadedModel.Load(path);
        (string format, string tokenizerPath) = TokenizerSource(model, path, null);
        for (int r = 0; r < settings.DataParallel.LocalSize; r++)
        {
            engines.Add(create(model.Config.VocabSize));
        }

        return new ModelCardSource(settings.Name, format, tokenizerPath, engines[0].ContextLength, engines[0].BlockSize, model.Config.VocabSize);
    }

    private static (string Format, string Path) TokenizerSource(LoadedModel loaded, string modelPath, string? tokenizerPath)
    {
        if (tokenizerPath is not null)
        {
            return Directory.Exists(tokenizerPath) || tokenizerPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
                ? ("hf", tokenizerPath) : ("llama2c", tokenizerPath);
        }

        return loaded.Weights switch
        {
            GgufModel => ("gguf", modelPath),
            SafeTensorsModel => ("hf", modelPath),
            _ => throw new CliUsageException("--tokenizer is required for this model"),
        };
    }
}

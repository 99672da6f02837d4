using Dynamo.Components.Workers;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Disaggregation;
using Dynamo.Mocker;
using Dynamo.Runtime;

namespace Dynamo.Cli.Components;

/// <summary>
/// What the worker component itself is started with, from flags (`dynamo worker`, `dynamo run out=...`) or
/// a serve config section: which engine, the model files, the address it serves and its status port; the
/// engines' own settings are their options records, bound from the same flags. The runtime connection's
/// settings (NATS, etcd, --lease-ttl) are the command's <see cref="RuntimeOptions"/>, not the worker's.
/// </summary>
internal sealed record WorkerSettings
{
    /// <summary>The model file or folder; null with <see cref="EngineKind"/> echo or mocker.</summary>
    public string? ModelPath { get; init; }

    public string? TokenizerPath { get; init; }

    /// <summary>The served model name (default: the file or folder name).</summary>
    public string? ServedModelName { get; init; }

    public EndpointAddress Address { get; init; } = new("dynamo", "backend", "generate");

    /// <summary>"dynamo" (the built-in engine), "echo" or "mocker".</summary>
    public string EngineKind { get; init; } = "dynamo";

    public bool IsPrefillWorker { get; init; }

    /// <summary>Aggregated or decode worker: whether it takes remote prefills (remote-prefill; its model card says so).</summary>
    public bool RemotePrefill { get; init; } = true;

    /// <summary>The thresholds this worker writes to the discovery store at start (null: it writes none, those in force stay).</summary>
    public DisaggregationSettings? Disaggregation { get; init; }

    /// <summary>--disaggregation-transfer-backend: one of <see cref="TransferBackends"/>.</summary>
    public string TransferBackend { get; init; } = "tcp";

    /// <summary>
    /// --kv-transfer-host: where the KV transfer listens and what it advertises to prefill workers. Null (the default):
    /// 127.0.0.1, this host only. An IP address of this host: that interface. 0.0.0.0 (or ::): every interface,
    /// advertising the address this host reaches etcd from. A host name: every interface, advertising the name.
    /// </summary>
    public string? KvTransferHost { get; init; }

    /// <summary>Where the KV transfer binds and the host it advertises (null: the server picks, see <see cref="KvTransferHost"/>).</summary>
    public (string Bind, string? Advertised) KvTransferBinding => KvTransferHost switch
    {
        null => ("127.0.0.1", null),
        { } host when System.Net.IPAddress.TryParse(host, out _) => (host, null),
        { } name => ("0.0.0.0", name),
    };

    /// <summary>The KV transfer's TCP port (0: any free port).</summary>
    public int KvTransferPort { get; init; }

    /// <summary>The accepted KV transfer backends: tcp, and nixl (the guides' name, served by the same TCP transfer).</summary>
    public static IReadOnlyList<string> TransferBackends { get; } = ["tcp", "nixl"];

    /// <summary>
    /// The built-in engine's settings; its KV block size and batch limits (--block-size, --max-num-seqs,
    /// --max-num-batched-tokens, --context-length, prefix caching, and --max-step-ms when given) are every engine kind's.
    /// </summary>
    public EngineOptions Engine { get; init; } = EngineOptions.Default;

    /// <summary>
    /// The mocker's own settings (--num-gpu-blocks, --speedup-ratio, its cost model); its block size and
    /// batch limits are taken from <see cref="Engine"/> when the mocker starts.
    /// </summary>
    public MockerOptions Mocker { get; init; } = MockerOptions.Default;

    /// <summary>How the built-in engine's model is split over processes (--tensor-parallel-size and its companions).</summary>
    public TensorParallelSettings TensorParallel { get; init; } = TensorParallelSettings.None;

    /// <summary>Engine replicas behind this worker (--dp-size), and this node's share of them.</summary>
    public DataParallelSettings DataParallel { get; init; } = DataParallelSettings.None;

    /// <summary>Kernel threads of each replica: --threads shared out among this node's replicas (one process-wide pool without --dp-size).</summary>
    public int? ThreadsPerReplica => DataParallel.Enabled ? Math.Max(1, Threads / DataParallel.LocalSize) : null;

    /// <summary>The init address the ranks meet at (<see cref="TensorParallelSettings.InitAddress"/>, or the free port chosen for one node).</summary>
    public string? TensorParallelInitAddress { get; init; }

    /// <summary>Compute threads of the built-in engine, per rank (--threads).</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>Port of the worker's /metrics, /health and /live (DYN_SYSTEM_PORT); null for none.</summary>
    public int? SystemPort { get; init; }

    /// <summary>
    /// On SIGTERM (or Ctrl-C) the worker withdraws its model card and lets its requests in flight finish for at
    /// most this long (--drain-timeout); what still runs then is stopped and migrated by the frontends.
    /// </summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The IP address the system port listens on (--system-host, DYN_SYSTEM_HOST): 127.0.0.1 by default, 0.0.0.0 for every interface.</summary>
    public string SystemHost { get; init; } = "127.0.0.1";

    /// <summary>
    /// Requests that may wait at this worker without having produced anything (--max-waiting-requests); one more is
    /// refused at once (worker_overloaded) and the frontend tries another worker.
    /// </summary>
    public int MaxWaitingRequests { get; init; } = EngineWorkerOptions.Default.MaxWaitingRequests;

    /// <summary>Flags accepted for the guides' sake that change nothing here; each is named once at startup.</summary>
    public IReadOnlyList<string> IgnoredFlags { get; init; } = [];

    public string Name => ServedModelName ?? (ModelPath is null ? EngineKind : Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(ModelPath)));

    /// <summary>Checks the engine kind and the options it uses; throws <see cref="ArgumentException"/> naming the flag of the first bad one.</summary>
    public WorkerSettings Validate()
    {
        if (EngineKind is not ("dynamo" or "echo" or "mocker"))
        {
            throw new ArgumentException($"--engine: '{EngineKind}' is not dynamo, echo or mocker");
        }

        if (DrainTimeout < TimeSpan.Zero || DrainTimeout > TimeSpan.FromHours(1))
        {
            throw new ArgumentException($"--drain-timeout: {DrainTimeout.TotalSeconds} s is outside 0..3600 s");
        }

        if (MaxWaitingRequests < 1)
        {
            throw new ArgumentException($"--max-waiting-requests: {MaxWaitingRequests} must be at least 1");
        }

        if (Threads < 1)
        {
            throw new ArgumentException($"--threads: {Threads} must be at least 1");
        }

        if (!TransferBackends.Contains(TransferBackend))
        {
            throw new ArgumentException($"--disaggregation-transfer-backend: '{TransferBackend}' is not one of {string.Join(", ", TransferBackends)}");
        }

        if (KvTransferPort is < 0 or > 65535)
        {
            throw new ArgumentException($"--kv-transfer-port: {KvTransferPort} is not a port number");
        }

        if (KvTransferHost is { } host && (host.Length == 0 || host.Any(char.IsWhiteSpace)))
        {
            throw new ArgumentException($"--kv-transfer-host: '{host}' is not an IP address or host name");
        }

        if (!System.Net.IPAddress.TryParse(SystemHost, out _))
        {
            throw new ArgumentException($"--system-host (DYN_SYSTEM_HOST): '{SystemHost}' is not an IP address (127.0.0.1 for this host only, 0.0.0.0 for every interface)");
        }

        Disaggregation?.Validate();
        Engine.Validate();
        TensorParallel.Validate();
        if (TensorParallel.Enabled && EngineKind != "dynamo")
        {
            throw new ArgumentException($"{TensorParallel.SizeFlag}: {TensorParallel.Size} splits the built-in engine's model; --engine {EngineKind} has none");
        }

        if (TensorParallel is { Enabled: true, Pipeline: true } && IsPrefillWorker)
        {
            throw new ArgumentException($"--pipeline-parallel-size {TensorParallel.Size}: a prefill worker sends KV to decode workers, and KV transfer with pipeline parallelism is not supported yet (serve it aggregated)");
        }

        if (EngineKind == "mocker")
        {
            MockerFor(vocabSize: Mocker.VocabSize, workerId: 0).Validate();
        }
        else if (Mocker.KvEventLoss != 0)
        {
            throw new ArgumentException($"--kv-event-loss is a fault injection of the mocker engine (--engine mocker); --engine {EngineKind} loses no KV events");
        }

        return this;
    }

    /// <summary>The mocker's options: <see cref="Mocker"/> with <see cref="Engine"/>'s block size and batch limits (and its step-time budget when one was given).</summary>
    public MockerOptions MockerFor(int vocabSize, long workerId) => Mocker with
    {
        BlockSize = Engine.BlockSize,
        MaxNumSeqs = Engine.MaxNumSeqs,
        MaxNumBatchedTokens = Engine.MaxNumBatchedTokens,
        MaxStepMs = Engine.MaxStepMs ?? Mocker.MaxStepMs,
        ContextLength = Engine.ContextLength ?? Mocker.ContextLength,
        PrefixCaching = Engine.PrefixCaching,
        VocabSize = vocabSize,
        WorkerId = workerId,
    };
}

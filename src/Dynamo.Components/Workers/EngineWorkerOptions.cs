using Dynamo.Components.KvTransfer;

namespace Dynamo.Components.Workers;

/// <summary>Settings of an <see cref="EngineWorker"/>; tests write <c>EngineWorkerOptions.Default with { ... }</c>.</summary>
public sealed record EngineWorkerOptions
{
    /// <summary>The defaults.</summary>
    public static EngineWorkerOptions Default { get; } = new();

    /// <summary>
    /// KV events waiting for the event plane. When it is full (the plane slower than the engine) the oldest
    /// are dropped and counted (<see cref="EngineWorker.KvEventsDropped"/>); a router sees the gap in the
    /// event ids and reloads the worker's dump, so its view heals.
    /// </summary>
    public int KvEventBufferCapacity { get; init; } = 65536;

    /// <summary>How often the worker publishes its load (<c>load_metrics</c>).</summary>
    public TimeSpan LoadMetricsInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Where KV computed by prefill workers arrives (a decode worker's transfer port); null: requests that ask
    /// for a remote prefill are prefilled locally.
    /// </summary>
    public KvTransferServer? KvTransfer { get; init; }

    /// <summary>
    /// The served model's <see cref="Workers.ModelFingerprint"/> (null: not checked). A decode worker sends it with
    /// each remote prefill; a prefill worker whose own differs refuses (<c>model_mismatch</c>) and the decode worker
    /// prefills locally.
    /// </summary>
    public string? ModelFingerprint { get; init; }

    /// <summary>How a prefill worker pushes the KV it computed to decode workers.</summary>
    public KvTransferClient KvTransferClient { get; init; } = new();

    /// <summary>
    /// A remote prefill that sends nothing for this long (a prefill worker reports progress every
    /// <see cref="PrefillProgressInterval"/>) is given up: the decode worker prefills locally.
    /// </summary>
    public TimeSpan RemotePrefillStallTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How often a prefill worker tells the decode worker waiting for it that it is alive.</summary>
    public TimeSpan PrefillProgressInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Decode side, benchmarks only: the link that KV payloads without data (the mocker's) are taken to cross; the
    /// worker waits its transfer time before delivering one (see <see cref="SimulatedKvLink"/>). Null: none.
    /// </summary>
    public SimulatedKvLink? SimulatedLink { get; init; }

    /// <summary>
    /// Requests this worker holds that have not produced anything yet (queued in the engine, or in their prefill)
    /// at most (<c>--max-waiting-requests</c>); one more is refused at once with <see cref="EngineWorker.OverloadedCode"/>,
    /// before anything runs, and the frontend tries another worker.
    /// </summary>
    public int MaxWaitingRequests { get; init; } = 1024;

    /// <summary>
    /// The data-parallel rank of the worker's first engine: a node serving ranks 8..15 of a 16-rank deployment
    /// (--dp-size 16 --nnodes 2 --node-rank 1) numbers its engines from 8, so every rank keeps one number everywhere.
    /// </summary>
    public int FirstDpRank { get; init; }

    /// <summary>
    /// Whether the worker's engines are data-parallel ranks (--dp-size above 1): its instance record lists them and
    /// routers name a rank in each request, even on a node that serves one of them. Always so with several engines.
    /// </summary>
    public bool DataParallel { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public EngineWorkerOptions Validate()
    {
        if (KvEventBufferCapacity < 1)
        {
            throw new ArgumentException($"the KV event buffer must hold at least 1 event (got {KvEventBufferCapacity})");
        }

        if (FirstDpRank < 0)
        {
            throw new ArgumentException($"the first data-parallel rank must be 0 or more (got {FirstDpRank})");
        }

        if (MaxWaitingRequests < 1)
        {
            throw new ArgumentException($"--max-waiting-requests: {MaxWaitingRequests} must be at least 1");
        }

        if (LoadMetricsInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException($"the load metrics interval must be positive (got {LoadMetricsInterval})");
        }

        if (RemotePrefillStallTimeout <= TimeSpan.Zero || PrefillProgressInterval <= TimeSpan.Zero || PrefillProgressInterval >= RemotePrefillStallTimeout)
        {
            throw new ArgumentException($"the prefill progress interval ({PrefillProgressInterval}) must be positive and shorter than the remote prefill stall timeout ({RemotePrefillStallTimeout})");
        }

        SimulatedLink?.Validate();
        return this;
    }
}

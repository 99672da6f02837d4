namespace Dynamo.Llm.Routing;

/// <summary>
/// A <see cref="KvRouter"/>'s lease: where a request goes and the load the router charged for it. The caller
/// sends the request to <see cref="WorkerLease.WorkerId"/>, calls <see cref="MarkFirstToken"/> when the first
/// token arrives (its prompt is no longer "active prefill"), and <see cref="Complete"/> when the stream ends,
/// fails or is cancelled (or disposes it: the same without an actual cached-token count). Each call is
/// idempotent and thread-safe; a decision whose worker was removed meanwhile releases nothing.
/// </summary>
public sealed class RoutingDecision : WorkerLease, IDisposable
{
    private readonly KvRouter _router;

    internal RoutingDecision(KvRouter router, KvWorkerState worker, int promptTokens, int overlapBlocks, int indexedOverlapBlocks, double cost, ulong[] hashes, int hashCount, long chargedPrefillTokens, int blockSize)
        : base(worker.WorkerId, worker.Ranked ? worker.Target.DpRank : null)
    {
        _router = router;
        Worker = worker;
        PromptTokens = promptTokens;
        OverlapBlocks = overlapBlocks;
        IndexedOverlapBlocks = indexedOverlapBlocks;
        Cost = cost;
        Hashes = hashes;
        HashCount = hashCount;
        ChargedPrefillTokens = chargedPrefillTokens;
        Predicted = Math.Min(overlapBlocks * blockSize, promptTokens);
    }

    /// <summary>Prompt tokens of the request.</summary>
    public int PromptTokens { get; }

    /// <summary>Leading prompt blocks expected cached on the worker: in its KV index, or in flight there (see <see cref="KvRouterOptions.CountInflightPrefixes"/>).</summary>
    public int OverlapBlocks { get; }

    /// <summary>Leading prompt blocks the KV index alone says the worker caches.</summary>
    public int IndexedOverlapBlocks { get; }

    /// <summary>The predicted prefix-cache hit in tokens (<see cref="OverlapBlocks"/> x block size, at most the prompt).</summary>
    public override int PredictedCachedTokens => Predicted;

    /// <summary>The chosen worker's cost (see Routing/README.md).</summary>
    public double Cost { get; }

    /// <summary>Whether the load is released.</summary>
    public bool IsCompleted => State == DecisionState.Completed;

    internal KvWorkerState Worker { get; }

    internal ulong[] Hashes { get; }

    internal int HashCount { get; }

    internal long ChargedPrefillTokens { get; }

    internal DecisionState State { get; set; }

    /// <summary>Whether it is on its worker's <see cref="DecisionList"/>.</summary>
    internal bool Listed { get; set; }

    /// <summary>Its neighbours on its worker's <see cref="DecisionList"/>.</summary>
    internal RoutingDecision? PrevOnWorker { get; set; }

    /// <inheritdoc cref="PrevOnWorker"/>
    internal RoutingDecision? NextOnWorker { get; set; }

    /// <summary>Its worker's <see cref="KvWorkerState.IndexGeneration"/> when decided: its outcome judges the index only while that holds.</summary>
    internal int IndexGeneration { get; init; }

    /// <summary>Its id in this router's charge events (0: not published, e.g. a peer replica's decision charged here).</summary>
    internal long ChargeId { get; set; }

    private int Predicted { get; }

    /// <summary>The first token arrived: the request's prefill tokens stop counting as active prefill.</summary>
    public override void MarkFirstToken() => _router.OnFirstToken(this);

    /// <summary>
    /// The stream ended (finished, failed or cancelled): releases the load. <paramref name="actualCachedTokens"/>
    /// is the engine's cached-token count when known (the final response's <c>cached_tokens</c>), counted
    /// against the prediction in <see cref="RouterStats"/>; <paramref name="outputTokens"/> the tokens generated, when
    /// known, whose blocks count as new blocks on the worker (<see cref="PoolRetention"/>).
    /// </summary>
    public override void Complete(int? actualCachedTokens = null, int? outputTokens = null) => _router.OnComplete(this, actualCachedTokens, outputTokens);

    /// <summary>Releases the load, as <see cref="Complete"/> without a count.</summary>
    public void Dispose() => Complete();

    internal enum DecisionState
    {
        Prefill = 0,
        Decoding = 1,
        Completed = 2,
    }
}

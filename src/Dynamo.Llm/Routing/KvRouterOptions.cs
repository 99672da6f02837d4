namespace Dynamo.Llm.Routing;

/// <summary>
/// Settings of a <see cref="KvRouter"/>, bound once from the frontend's flags (named in
/// <see cref="Validate"/>'s messages). Tests write <c>KvRouterOptions.Default with { ... }</c>.
/// </summary>
public sealed record KvRouterOptions
{
    /// <summary>The defaults.</summary>
    public static KvRouterOptions Default { get; } = new();

    /// <summary>Tokens per KV block; must equal the workers' (<c>--block-size</c>).</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>
    /// Weight of prefill blocks against decode blocks in the cost (<c>--kv-overlap-score-weight</c>). 4 (the
    /// original system has 1): prefill blocks delay the first token, decode blocks are KV memory; with 1 a
    /// holder busy decoding loses its prefix's requests to idle workers that recompute it, and a hot
    /// prefix spreads before its holder's queue outweighs recomputing it. See Routing/README.md.
    /// </summary>
    public double OverlapScoreWeight { get; init; } = 4.0;

    /// <summary>0: lowest cost, ties at random; above 0: softmax sampling over normalised negated costs (<c>--router-temperature</c>).</summary>
    public double Temperature { get; init; }

    /// <summary>Requests that may wait while every worker is saturated; beyond it they are rejected (<c>--router-max-queue</c>).</summary>
    public int MaxQueue { get; init; } = 1024;

    /// <summary>How long a request may wait in the queue; then it is rejected (<c>--router-queue-timeout</c>), never an unbounded wait.</summary>
    public TimeSpan QueueTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A worker is saturated when its active prefill tokens exceed this times its batch budget (<c>--router-saturation</c>).</summary>
    public double Saturation { get; init; } = 1.0;

    /// <summary>A worker's batch budget (its max-num-batched-tokens) when it is added without one (<c>--router-batch-budget</c>).</summary>
    public int DefaultBatchBudget { get; init; } = 8192;

    /// <summary>Age at which a worker's reported load no longer counts; it fades linearly until then (<c>--router-metrics-decay</c>).</summary>
    public TimeSpan StaleMetricsDecay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The Retry-After suggested with a rejection (<c>--router-retry-after</c>).</summary>
    public TimeSpan RetryAfter { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Count the prefixes of requests in flight on a worker as soon cached there (<c>--router-inflight-prefixes</c>):
    /// a burst of requests sharing a prefix then lands together instead of being spread before the first
    /// one's KV events arrive. See Routing/README.md.
    /// </summary>
    public bool CountInflightPrefixes { get; init; } = true;

    /// <summary>
    /// How long a completed request's prefix still counts as cached on its worker while its KV events
    /// are on their way (the event plane is asynchronous: a request sent right after another finished
    /// would otherwise not see the prefix). Zero turns it off. Only with <see cref="CountInflightPrefixes"/>.
    /// </summary>
    public TimeSpan RecentPrefixWindow { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Routing that checks itself (<c>--router-resync-accuracy</c>): when the router's accuracy on a worker (its
    /// predicted against the engine's actual cached blocks, over the worker's last <see cref="AccuracyWindow"/>
    /// completed requests: <see cref="RoutingAccuracy"/>) falls below this, the router resyncs that worker's index
    /// from its dump, and says so in a log line and a metric. It catches what event ids cannot: events lost before
    /// they were numbered, a worker whose cache changed under it, eviction faster than events travel. 0 turns it off.
    /// </summary>
    public double ResyncAccuracy { get; init; } = 0.8;

    /// <summary>Completed requests per worker over which accuracy is judged (<c>--router-accuracy-window</c>).</summary>
    public int AccuracyWindow { get; init; } = 16;

    /// <summary>
    /// Route from the workers' KV events (true, the default). False (<c>--no-kv-events</c>): the router ignores KV events
    /// and dumps and predicts each worker's cache from its own decisions: a completed request's prefix counts as cached
    /// on its worker for as long as that worker's pool is expected to keep it (<see cref="PrefixTtl"/>, else the pool's
    /// own eviction estimate). See Routing/README.md, "Without KV events".
    /// </summary>
    public bool UseKvEvents { get; init; } = true;

    /// <summary>
    /// Without KV events: a fixed lifetime of a completed request's prefix on its worker instead of the pool's eviction
    /// estimate (<c>--router-prefix-ttl</c>; null, the default: the estimate). Refused with KV events.
    /// </summary>
    public TimeSpan? PrefixTtl { get; init; }

    /// <summary>
    /// Router replicas: how often a replica announces its live decisions to the others (<c>dynamo router
    /// --router-replica-heartbeat</c>; a count and a digest of their ids, so a replica that lost some of another's events
    /// resyncs its charges of it) and releases the peer charges past <see cref="PeerChargeTtl"/>.
    /// </summary>
    public TimeSpan ReplicaHeartbeat { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Router replicas: a peer's charge that neither its <c>released</c> event nor a heartbeat of its replica agreeing with
    /// this router's count confirmed for this long is released (<c>dynamo router --router-peer-charge-ttl</c>): the bound
    /// on a charge whose release was lost while its replica's heartbeats do not arrive either.
    /// </summary>
    public TimeSpan PeerChargeTtl { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Seed of tie-breaking and temperature sampling; null for a random seed (<c>--router-seed</c>).</summary>
    public int? Seed { get; init; }

    /// <summary>Checks every setting; <see cref="ArgumentException"/> naming the flag when one is out of range.</summary>
    public KvRouterOptions Validate()
    {
        static void Check(bool ok, string message)
        {
            if (!ok)
            {
                throw new ArgumentException(message);
            }
        }

        Check(BlockSize is >= 1 and <= 1024, $"--block-size must be 1..1024 (got {BlockSize})");
        Check(double.IsFinite(OverlapScoreWeight) && OverlapScoreWeight >= 0, $"--kv-overlap-score-weight must be a finite number, 0 or more (got {OverlapScoreWeight})");
        Check(double.IsFinite(Temperature) && Temperature >= 0, $"--router-temperature must be a finite number, 0 or more (got {Temperature})");
        Check(MaxQueue >= 0, $"--router-max-queue must be 0 or more (got {MaxQueue})");
        Check(QueueTimeout > TimeSpan.Zero && QueueTimeout <= TimeSpan.FromHours(1), $"--router-queue-timeout must be above 0 and at most 3600 seconds (got {QueueTimeout.TotalSeconds})");
        Check(double.IsFinite(Saturation) && Saturation > 0, $"--router-saturation must be a positive number (got {Saturation})");
        Check(DefaultBatchBudget >= 1, $"--router-batch-budget must be at least 1 token (got {DefaultBatchBudget})");
        Check(RecentPrefixWindow >= TimeSpan.Zero, $"the recent-prefix window must not be negative (got {RecentPrefixWindow})");
        Check(PrefixTtl is null || (PrefixTtl > TimeSpan.Zero && PrefixTtl <= TimeSpan.FromHours(24)), $"--router-prefix-ttl must be above 0 and at most 86400 seconds (got {PrefixTtl?.TotalSeconds})");
        Check(!UseKvEvents || PrefixTtl is null, "--router-prefix-ttl: only with --no-kv-events (with KV events the index is the cache's truth and a completed prefix counts only while its events travel)");
        Check(UseKvEvents || CountInflightPrefixes, "--no-kv-events needs the in-flight and completed prefixes counted (CountInflightPrefixes): without KV events the router's own decisions are all it knows of the workers' caches");
        Check(StaleMetricsDecay > TimeSpan.Zero, $"--router-metrics-decay must be positive (got {StaleMetricsDecay})");
        Check(double.IsFinite(ResyncAccuracy) && ResyncAccuracy is >= 0 and <= 1, $"--router-resync-accuracy must be 0 (off) .. 1 (got {ResyncAccuracy})");
        Check(AccuracyWindow is >= 1 and <= 4096, $"--router-accuracy-window must be 1..4096 requests (got {AccuracyWindow})");
        Check(ReplicaHeartbeat > TimeSpan.Zero && ReplicaHeartbeat <= TimeSpan.FromMinutes(1), $"--router-replica-heartbeat must be above 0 and at most 60 seconds (got {ReplicaHeartbeat.TotalSeconds})");
        Check(PeerChargeTtl >= 2 * ReplicaHeartbeat && PeerChargeTtl <= TimeSpan.FromHours(24), $"--router-peer-charge-ttl must be at least twice --router-replica-heartbeat ({2 * ReplicaHeartbeat.TotalSeconds} s) and at most 86400 seconds (got {PeerChargeTtl.TotalSeconds})");
        Check(RetryAfter >= TimeSpan.Zero, $"--router-retry-after must be 0 or more (got {RetryAfter})");
        return this;
    }
}

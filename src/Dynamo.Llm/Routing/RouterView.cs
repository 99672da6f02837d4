using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// One router replica's view of its workers' load, as the router component answers it on <c>{ns}.router.view</c>
/// (JSON, one frame): what it charged itself and what the other replicas' charge events charged here. Replicas that
/// share their charges agree on it once their events have arrived.
/// </summary>
public sealed record RouterView
{
    /// <summary>The replica (its runtime instance id).</summary>
    [JsonPropertyName("router_id")]
    public long RouterId { get; init; }

    /// <summary>Requests it routed itself.</summary>
    [JsonPropertyName("decisions")]
    public long Decisions { get; init; }

    /// <summary>Requests in flight it counts (its own and the other replicas').</summary>
    [JsonPropertyName("in_flight")]
    public int InFlight { get; init; }

    /// <summary>Of those, the other replicas' decisions.</summary>
    [JsonPropertyName("peer_charges")]
    public int PeerCharges { get; init; }

    /// <summary>Peer charges it released without their <c>released</c> event (expired, or not live at a resync).</summary>
    [JsonPropertyName("peer_charges_dropped")]
    public long PeerChargesDropped { get; init; }

    /// <summary>Of its decisions, those completed with the engine's cached tokens (sent back by the frontend).</summary>
    [JsonPropertyName("reported_decisions")]
    public long ReportedDecisions { get; init; }

    /// <summary>The cached tokens the engines reported for them.</summary>
    [JsonPropertyName("reported_actual_hit_tokens")]
    public long ReportedActualHitTokens { get; init; }

    /// <summary>Workers' index resyncs it asked because its routing accuracy on them fell.</summary>
    [JsonPropertyName("accuracy_resyncs")]
    public long AccuracyResyncs { get; init; }

    /// <summary>Each worker's load in this view, by id.</summary>
    [JsonPropertyName("workers")]
    public IReadOnlyList<Worker> Workers { get; init; } = [];

    /// <summary>The view of <paramref name="stats"/>.</summary>
    public static RouterView Of(long routerId, RouterStats stats)
    {
        ArgumentNullException.ThrowIfNull(stats);
        return new RouterView
        {
            RouterId = routerId,
            Decisions = stats.Decisions,
            InFlight = stats.InFlight,
            PeerCharges = stats.PeerCharges,
            PeerChargesDropped = stats.PeerChargesDropped,
            ReportedDecisions = stats.ReportedDecisions,
            ReportedActualHitTokens = stats.ReportedActualHitTokens,
            AccuracyResyncs = stats.AccuracyResyncs,
            Workers = [.. stats.Workers.Select(w => new Worker(w.WorkerId, w.DpRank, w.InFlight, w.ActivePrefillTokens, w.ActiveBlocks, w.IndexedBlocks))],
        };
    }

    /// <summary>The view's JSON (UTF-8).</summary>
    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, RoutingJsonContext.Default.RouterView);

    /// <summary>Parses a view; <see cref="JsonException"/> when malformed.</summary>
    public static RouterView Parse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouterView) ?? throw new JsonException("null router view");

    /// <summary>One worker (or data-parallel rank) in the view.</summary>
    /// <param name="WorkerId">The worker.</param>
    /// <param name="DpRank">Its rank (0 for a worker with one engine).</param>
    /// <param name="InFlight">Requests charged to it and not released.</param>
    /// <param name="ActivePrefillTokens">Prefill tokens charged to it before their first token.</param>
    /// <param name="ActiveBlocks">KV blocks of its in-flight requests.</param>
    /// <param name="IndexedBlocks">Blocks the replica's KV index says it caches.</param>
    public sealed record Worker(
        [property: JsonPropertyName("worker_id")] long WorkerId,
        [property: JsonPropertyName("dp_rank")] int DpRank,
        [property: JsonPropertyName("in_flight")] int InFlight,
        [property: JsonPropertyName("active_prefill_tokens")] long ActivePrefillTokens,
        [property: JsonPropertyName("active_blocks")] long ActiveBlocks,
        [property: JsonPropertyName("indexed_blocks")] int IndexedBlocks);
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// One router replica's decision, as the other replicas of the same endpoint apply it (event plane, subject
/// <c>dyn.{ns}.{component}.events.router_charges</c>; JSON). A replica publishes <see cref="RouterChargeKind.Charged"/>
/// when it charges a worker, then <see cref="RouterChargeKind.FirstToken"/> and <see cref="RouterChargeKind.Released"/>;
/// the others charge and release the same load on their own view, and ignore their own events
/// (Routing/README.md, "Router replicas"). Between them, every few seconds, a <see cref="RouterChargeKind.Live"/>
/// heartbeat (its <see cref="DecisionId"/> is then the last decision id it issued).
/// </summary>
public sealed record RouterChargeEvent
{
    /// <summary>The publishing replica (its runtime instance id).</summary>
    [JsonPropertyName("router_id")]
    public long RouterId { get; init; }

    /// <summary>The decision, unique within its replica (1, 2, ...).</summary>
    [JsonPropertyName("decision_id")]
    public long DecisionId { get; init; }

    /// <summary>What happened to it.</summary>
    [JsonPropertyName("kind")]
    public RouterChargeKind Kind { get; init; }

    /// <summary>The charged worker.</summary>
    [JsonPropertyName("worker_id")]
    public long WorkerId { get; init; }

    /// <summary>Its data-parallel rank (absent: rank 0).</summary>
    [JsonPropertyName("dp_rank")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int DpRank { get; init; }

    /// <summary>The request's prompt tokens (<see cref="RouterChargeKind.Charged"/> only).</summary>
    [JsonPropertyName("prompt_tokens")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int PromptTokens { get; init; }

    /// <summary>The prefill tokens charged (the prompt less its expected cached prefix; <see cref="RouterChargeKind.Charged"/> only).</summary>
    [JsonPropertyName("prefill_tokens")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public long PrefillTokens { get; init; }

    /// <summary>The sequence hashes of the prompt's full blocks (<see cref="RouterChargeKind.Charged"/> only).</summary>
    [JsonPropertyName("block_hashes")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<ulong>? BlockHashes { get; init; }

    /// <summary>Whether the request completed on the worker, so its prefix is cached there now (<see cref="RouterChargeKind.Released"/> only).</summary>
    [JsonPropertyName("completed")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public bool Completed { get; init; }

    /// <summary>
    /// The engine's cached prompt tokens, when the request completed with them (<see cref="RouterChargeKind.Released"/> only;
    /// absent from older replicas): the peers correct the worker's eviction estimate by them (<see cref="PoolRetention"/>).
    /// </summary>
    [JsonPropertyName("cached_tokens")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? CachedTokens { get; init; }

    /// <summary>The tokens the worker generated, when known (<see cref="RouterChargeKind.Released"/> only; absent from older replicas): blocks they filled count as new blocks on it.</summary>
    [JsonPropertyName("output_tokens")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? OutputTokens { get; init; }

    /// <summary>The replica's live decisions (<see cref="RouterChargeKind.Live"/> only).</summary>
    [JsonPropertyName("live_count")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int LiveCount { get; init; }

    /// <summary>The XOR of <see cref="KvRouter.DigestOf"/> over the live decisions' ids (<see cref="RouterChargeKind.Live"/> only).</summary>
    [JsonPropertyName("live_digest")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public ulong LiveDigest { get; init; }

    /// <summary>The heartbeat's number, 1, 2, ... within its replica (<see cref="RouterChargeKind.Live"/> only).</summary>
    [JsonPropertyName("heartbeat")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public long Heartbeat { get; init; }

    /// <summary>The event's JSON (UTF-8).</summary>
    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, RoutingJsonContext.Default.RouterChargeEvent);

    /// <summary>Parses an event; <see cref="JsonException"/> when malformed.</summary>
    public static RouterChargeEvent Parse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouterChargeEvent) ?? throw new JsonException("null router charge event");
}

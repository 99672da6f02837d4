using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// One frame of a router replica's answer to a <see cref="RouterChargeQuery"/>: its live decision ids (the first frames
/// of an ids query, each with the heartbeat and last decision id they were taken at), or the charges asked for, as
/// <see cref="RouterChargeKind.Charged"/> events whose prefill tokens are 0 once past their first token. Long answers
/// span several frames, each well under the request plane's payload limit.
/// </summary>
public sealed record RouterChargeSnapshot
{
    /// <summary>The answering replica.</summary>
    [JsonPropertyName("router_id")]
    public long RouterId { get; init; }

    /// <summary>Its last heartbeat when the ids were taken.</summary>
    [JsonPropertyName("heartbeat")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public long Heartbeat { get; init; }

    /// <summary>Its last decision id when the ids were taken: a decision above it is newer than the answer.</summary>
    [JsonPropertyName("last_decision_id")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public long LastDecisionId { get; init; }

    /// <summary>Live decision ids (an ids query).</summary>
    [JsonPropertyName("decision_ids")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<long>? DecisionIds { get; init; }

    /// <summary>The charges asked for that are still live (a charges query).</summary>
    [JsonPropertyName("charges")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<RouterChargeEvent>? Charges { get; init; }

    /// <summary>The frame's JSON (UTF-8).</summary>
    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, RoutingJsonContext.Default.RouterChargeSnapshot);

    /// <summary>Parses a frame; <see cref="JsonException"/> when malformed.</summary>
    public static RouterChargeSnapshot Parse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouterChargeSnapshot) ?? throw new JsonException("null router charge snapshot");
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// What a router replica asks another for when it joins or finds itself out of step with it (the router component's
/// <c>{ns}.router.charges</c>, JSON, version 1): the ids of its live decisions, or the charges of some of them. Answered
/// with <see cref="RouterChargeSnapshot"/> frames (Routing/README.md, "Router replicas").
/// </summary>
public sealed record RouterChargeQuery
{
    /// <summary>Protocol version (1).</summary>
    [JsonPropertyName("version")]
    public int Version { get; init; } = 1;

    /// <summary>The decisions whose charges are wanted; null: only the ids of every live decision.</summary>
    [JsonPropertyName("decision_ids")]
    public IReadOnlyList<long>? DecisionIds { get; init; }

    /// <summary>The query's JSON (UTF-8).</summary>
    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, RoutingJsonContext.Default.RouterChargeQuery);

    /// <summary>Parses a query; <see cref="JsonException"/> when malformed.</summary>
    public static RouterChargeQuery Parse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouterChargeQuery) ?? throw new JsonException("null router charge query");
}

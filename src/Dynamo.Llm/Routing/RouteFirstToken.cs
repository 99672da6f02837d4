using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// What a frontend tells the router replica that routed a request when the request's first token arrives (the router
/// component's <c>{ns}.router.first_token</c>, JSON, version 1; sent only to a replica whose <see cref="RouteResponse"/>
/// named a <see cref="RouteResponse.LeaseId"/>): the replica's decision stops counting the request's prompt as the
/// worker's queued prefill. Fire-and-forget: the token stream never waits for it, and a replica without the endpoint (an
/// older one) answers no responders, which the frontend ignores. A separate endpoint, not a kind on <c>complete</c>: an
/// older replica would read any message there as the request's completion.
/// </summary>
public sealed record RouteFirstToken
{
    /// <summary>Protocol version (1).</summary>
    [JsonPropertyName("version")]
    public int Version { get; init; } = 1;

    /// <summary>The decision, as the replica's <see cref="RouteResponse.LeaseId"/> named it.</summary>
    [JsonPropertyName("lease_id")]
    public long LeaseId { get; init; }

    /// <summary>The message's JSON (UTF-8).</summary>
    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, RoutingJsonContext.Default.RouteFirstToken);

    /// <summary>Parses a message; <see cref="JsonException"/> when malformed.</summary>
    public static RouteFirstToken Parse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouteFirstToken) ?? throw new JsonException("null route first token");
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// What a frontend tells the router replica that routed a request once the request finished on its worker (the router
/// component's <c>{ns}.router.complete</c>, JSON, version 1; sent only to a replica whose <see cref="RouteResponse"/>
/// named a <see cref="RouteResponse.LeaseId"/>): the engine's cached tokens, which the replica's decision completes
/// with, so its accuracy check and eviction estimate hear of them, and the tokens generated when known (optional: the
/// blocks they filled count in the eviction estimate; an older replica ignores them). The route stream is closed after it.
/// </summary>
public sealed record RouteCompletion
{
    /// <summary>Protocol version (1).</summary>
    [JsonPropertyName("version")]
    public int Version { get; init; } = 1;

    /// <summary>The decision, as the replica's <see cref="RouteResponse.LeaseId"/> named it.</summary>
    [JsonPropertyName("lease_id")]
    public long LeaseId { get; init; }

    /// <summary>The engine's cached prompt tokens (its final response's <c>cached_tokens</c>).</summary>
    [JsonPropertyName("cached_tokens")]
    public int CachedTokens { get; init; }

    /// <summary>The tokens the worker generated for the request, when known (absent from older frontends).</summary>
    [JsonPropertyName("output_tokens")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? OutputTokens { get; init; }

    /// <summary>The message's JSON (UTF-8).</summary>
    public byte[] ToUtf8Json() => JsonSerializer.SerializeToUtf8Bytes(this, RoutingJsonContext.Default.RouteCompletion);

    /// <summary>Parses a message; <see cref="JsonException"/> when malformed.</summary>
    public static RouteCompletion Parse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouteCompletion) ?? throw new JsonException("null route completion");
}

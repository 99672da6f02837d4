using System.Text.Json.Serialization;

namespace Dynamo.Frontend.Http;

/// <summary>The request plane in GET /health: whether requests go out now.</summary>
internal sealed record HealthRequestPlane
{
    /// <summary>"nats" or "inproc".</summary>
    [JsonPropertyName("name")]
    public required string Name { get; init; }

    [JsonPropertyName("connected")]
    public required bool Connected { get; init; }

    /// <summary>When the connection was lost (ISO 8601); absent while connected.</summary>
    [JsonPropertyName("disconnected_since")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public DateTimeOffset? DisconnectedSince { get; init; }
}

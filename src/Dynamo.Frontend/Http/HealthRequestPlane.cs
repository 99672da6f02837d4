using System.Text.Json.Serialization;

namespace Dynamo.Frontend.Http;

/// <summary>The request plane in GET /health: its name ("nats", "inproc"), whether requests go out now, and since when not (absent while connected).</summary>
internal sealed record HealthRequestPlane(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("connected")] bool Connected,
    [property: JsonPropertyName("disconnected_since"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTimeOffset? DisconnectedSince);

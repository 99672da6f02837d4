using System.Text.Json.Serialization;

namespace Dynamo.Frontend.Http;

/// <summary>An endpoint instance in GET /health (id in hex, as in discovery keys).</summary>
internal sealed record HealthInstance(
    [property: JsonPropertyName("endpoint")] string Endpoint,
    [property: JsonPropertyName("instance_id")] string InstanceId,
    [property: JsonPropertyName("host")] string Host,
    [property: JsonPropertyName("available")] bool Available);

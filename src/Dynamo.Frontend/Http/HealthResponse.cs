using System.Text.Json.Serialization;

namespace Dynamo.Frontend.Http;

/// <summary>GET /health.</summary>
internal sealed record HealthResponse
{
    /// <summary>"healthy" when the request plane is connected and some worker serves some model, else "unhealthy".</summary>
    [JsonPropertyName("status")]
    public required string Status { get; init; }

    /// <summary>Why it is unhealthy (the request plane's state first); absent when healthy.</summary>
    [JsonPropertyName("reason")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Reason { get; init; }

    [JsonPropertyName("request_plane")]
    public required HealthRequestPlane RequestPlane { get; init; }

    [JsonPropertyName("models")]
    public required IReadOnlyList<HealthModel> Models { get; init; }

    /// <summary>Endpoints that model cards name ("ns.comp.ep").</summary>
    [JsonPropertyName("endpoints")]
    public required IReadOnlyList<string> Endpoints { get; init; }

    /// <summary>Instances registered on those endpoints.</summary>
    [JsonPropertyName("instances")]
    public required IReadOnlyList<HealthInstance> Instances { get; init; }
}

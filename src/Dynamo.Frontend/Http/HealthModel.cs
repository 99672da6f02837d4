using System.Text.Json.Serialization;

namespace Dynamo.Frontend.Http;

/// <summary>A served model in GET /health.</summary>
internal sealed record HealthModel(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("instances")] IReadOnlyList<string> Instances);

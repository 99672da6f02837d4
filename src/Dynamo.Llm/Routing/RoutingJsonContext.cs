using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>Source-generated JSON of the router component's protocol.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(RouteRequest))]
[JsonSerializable(typeof(RouteResponse))]
internal sealed partial class RoutingJsonContext : JsonSerializerContext;

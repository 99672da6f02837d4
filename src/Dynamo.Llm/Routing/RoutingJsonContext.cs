using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>Source-generated JSON of the router component's protocol and of the replicas' charge events.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(RouteRequest))]
[JsonSerializable(typeof(RouteResponse))]
[JsonSerializable(typeof(RouterChargeEvent))]
[JsonSerializable(typeof(RouterView))]
[JsonSerializable(typeof(RouterChargeQuery))]
[JsonSerializable(typeof(RouterChargeSnapshot))]
[JsonSerializable(typeof(RouteCompletion))]
[JsonSerializable(typeof(RouteFirstToken))]
internal sealed partial class RoutingJsonContext : JsonSerializerContext;

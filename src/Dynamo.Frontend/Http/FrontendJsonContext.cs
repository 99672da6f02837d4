using System.Text.Json.Serialization;

namespace Dynamo.Frontend.Http;

/// <summary>Source-generated JSON of the frontend's own routes.</summary>
[JsonSerializable(typeof(HealthResponse))]
internal sealed partial class FrontendJsonContext : JsonSerializerContext;

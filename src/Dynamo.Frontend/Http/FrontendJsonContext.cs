using System.Text.Json.Serialization;

namespace Dynamo.Frontend.Http;

/// <summary>Source-generated JSON of the frontend's own routes.</summary>
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(WebUi.StatusResponse))]
internal sealed partial class FrontendJsonContext : JsonSerializerContext;

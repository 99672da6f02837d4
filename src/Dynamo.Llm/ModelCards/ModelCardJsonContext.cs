using System.Text.Json.Serialization;

namespace Dynamo.Llm.ModelCards;

/// <summary>Source-generated JSON for model cards.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ModelDeploymentCard))]
internal sealed partial class ModelCardJsonContext : JsonSerializerContext;

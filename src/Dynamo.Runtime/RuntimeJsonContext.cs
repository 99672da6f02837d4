using System.Text.Json.Serialization;

namespace Dynamo.Runtime;

/// <summary>Source-generated JSON for the runtime's pinned records.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(InstanceRecord))]
internal sealed partial class RuntimeJsonContext : JsonSerializerContext;

using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>
/// Source-generated JSON metadata for the KV event wire format. Snake-case names; nulls in non-nullable
/// places and missing constructor fields are errors, unknown fields are ignored.
/// </summary>
[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(KvEvent))]
[JsonSerializable(typeof(KvEventDump))]
[JsonSerializable(typeof(KvStoredData))]
[JsonSerializable(typeof(KvRemovedData))]
internal sealed partial class KvJsonContext : JsonSerializerContext;

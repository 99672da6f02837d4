using System.Text.Json.Serialization;

namespace Dynamo.Components.Processing;

/// <summary>Source-generated JSON of the Processor component's protocol.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault)]
[JsonSerializable(typeof(ProcessorRequest))]
[JsonSerializable(typeof(ProcessorFrame))]
[JsonSerializable(typeof(System.Text.Json.JsonElement))]
internal sealed partial class ProcessorJsonContext : JsonSerializerContext;

using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>Source-generated JSON for the worker protocol.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(GenerateRequest))]
[JsonSerializable(typeof(GenerateResponse))]
[JsonSerializable(typeof(WorkerLoad))]
[JsonSerializable(typeof(KvDumpRequest))]
internal sealed partial class WorkerJsonContext : JsonSerializerContext;

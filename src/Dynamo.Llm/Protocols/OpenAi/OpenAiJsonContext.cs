using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>Source-generated JSON for the OpenAI API: snake_case names, nulls left out unless a property says otherwise.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ModelObject))]
[JsonSerializable(typeof(ErrorResponse))]
public sealed partial class OpenAiJsonContext : JsonSerializerContext;

using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary><c>{"error": {...}}</c>: the body of every error response and of an error event mid-stream.</summary>
public sealed record ErrorResponse
{
    [JsonPropertyName("error")]
    public required ErrorDetail Error { get; init; }
}

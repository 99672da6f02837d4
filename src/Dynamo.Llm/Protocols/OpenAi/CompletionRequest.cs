using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>POST /v1/completions.</summary>
public sealed record CompletionRequest : OpenAiRequestBase
{
    /// <summary>A string, an array of strings, an array of token ids, or an array of token-id arrays (each prompt its own choices).</summary>
    [JsonPropertyName("prompt")]
    public JsonElement? Prompt { get; init; }

    /// <summary>Return log probabilities with this many alternatives per position (0..20).</summary>
    [JsonPropertyName("logprobs")]
    public int? Logprobs { get; init; }
}

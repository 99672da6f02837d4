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

    /// <summary>Return the prompt before the completion: not supported (true is refused with a 400).</summary>
    [JsonPropertyName("echo")]
    public bool? Echo { get; init; }

    /// <summary>Server-side candidates per choice: not supported beyond 1 (or n); larger values are refused with a 400.</summary>
    [JsonPropertyName("best_of")]
    public int? BestOf { get; init; }

    /// <summary>Text after the insertion point: not supported (a non-empty suffix is refused with a 400).</summary>
    [JsonPropertyName("suffix")]
    public string? Suffix { get; init; }
}

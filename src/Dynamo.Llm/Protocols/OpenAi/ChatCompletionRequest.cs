using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>POST /v1/chat/completions.</summary>
public sealed record ChatCompletionRequest : OpenAiRequestBase
{
    /// <summary>The conversation (at least one message).</summary>
    [JsonPropertyName("messages")]
    public IReadOnlyList<ChatMessageRequest>? Messages { get; init; }

    /// <summary>Newer name of max_tokens; wins when both are given.</summary>
    [JsonPropertyName("max_completion_tokens")]
    public int? MaxCompletionTokens { get; init; }

    /// <summary>Return each output token's log probability.</summary>
    [JsonPropertyName("logprobs")]
    public bool? Logprobs { get; init; }

    /// <summary>With logprobs: this many alternatives per position, 0..20.</summary>
    [JsonPropertyName("top_logprobs")]
    public int? TopLogprobs { get; init; }
}

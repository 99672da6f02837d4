using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>One response of a worker's <c>generate</c> endpoint: the next tokens, and on the last one the finish reason and counts.</summary>
public sealed record GenerateResponse
{
    /// <summary>New token ids (usually one).</summary>
    [JsonPropertyName("token_ids")]
    public required IReadOnlyList<int> TokenIds { get; init; }

    /// <summary>Their log probabilities, when asked for.</summary>
    [JsonPropertyName("logprobs")]
    public IReadOnlyList<float>? Logprobs { get; init; }

    /// <summary>Alternatives per token, when asked for.</summary>
    [JsonPropertyName("top_logprobs")]
    public IReadOnlyList<IReadOnlyList<GenerateTopLogprob>>? TopLogprobs { get; init; }

    /// <summary>"stop", "length" or "cancelled" on the last response.</summary>
    [JsonPropertyName("finish_reason")]
    public string? FinishReason { get; init; }

    /// <summary>Prompt tokens (last response).</summary>
    [JsonPropertyName("prompt_tokens")]
    public int? PromptTokens { get; init; }

    /// <summary>Prompt tokens found in the prefix cache (last response).</summary>
    [JsonPropertyName("cached_tokens")]
    public int? CachedTokens { get; init; }

    /// <summary>On the last response of a disaggregated request: where its prefill ran, what the transfer cost.</summary>
    [JsonPropertyName("prefill")]
    public PrefillReport? Prefill { get; init; }
}

using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>One output token's log probability and alternatives.</summary>
public sealed record ChatTokenLogprob
{
    [JsonPropertyName("token")]
    public required string Token { get; init; }

    [JsonPropertyName("logprob")]
    public float Logprob { get; init; }

    /// <summary>The token's UTF-8 bytes.</summary>
    [JsonPropertyName("bytes")]
    public IReadOnlyList<int>? Bytes { get; init; }

    [JsonPropertyName("top_logprobs")]
    public IReadOnlyList<ChatTopLogprob> TopLogprobs { get; init; } = [];
}

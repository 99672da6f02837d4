using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>An alternative token at one position.</summary>
public sealed record ChatTopLogprob
{
    [JsonPropertyName("token")]
    public required string Token { get; init; }

    [JsonPropertyName("logprob")]
    public float Logprob { get; init; }

    [JsonPropertyName("bytes")]
    public IReadOnlyList<int>? Bytes { get; init; }
}

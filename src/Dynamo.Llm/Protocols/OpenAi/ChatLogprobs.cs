using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>A chat choice's log probabilities.</summary>
public sealed record ChatLogprobs
{
    [JsonPropertyName("content")]
    public required IReadOnlyList<ChatTokenLogprob> Content { get; init; }
}

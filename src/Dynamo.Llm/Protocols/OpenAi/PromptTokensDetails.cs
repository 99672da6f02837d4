using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary><c>usage.prompt_tokens_details</c>.</summary>
public sealed record PromptTokensDetails
{
    /// <summary>Prompt tokens found in the workers' prefix caches.</summary>
    [JsonPropertyName("cached_tokens")]
    public int CachedTokens { get; init; }
}

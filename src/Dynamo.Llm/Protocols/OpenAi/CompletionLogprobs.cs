using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>The legacy completions logprobs object (parallel arrays).</summary>
public sealed record CompletionLogprobs
{
    [JsonPropertyName("tokens")]
    public required IReadOnlyList<string> Tokens { get; init; }

    [JsonPropertyName("token_logprobs")]
    public required IReadOnlyList<float> TokenLogprobs { get; init; }

    /// <summary>Per position: alternative token text to log probability (null when none were asked for).</summary>
    [JsonPropertyName("top_logprobs")]
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public IReadOnlyList<IReadOnlyDictionary<string, float>>? TopLogprobs { get; init; }

    /// <summary>Character offset of each token in the choice's text.</summary>
    [JsonPropertyName("text_offset")]
    public required IReadOnlyList<int> TextOffset { get; init; }
}

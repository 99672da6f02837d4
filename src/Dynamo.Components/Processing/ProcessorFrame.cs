using System.Text.Json.Serialization;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Components.Processing;

/// <summary>
/// One frame of a Processor component's answer (version 1 and 2 alike): first <c>start</c> (the
/// <see cref="GenerationInfo"/>), then <c>delta</c> frames (a <see cref="ChoiceEvent"/> each, with its token ids)
/// until every choice finished; or an <c>error</c> frame (the OpenAI error with its HTTP status) at any point,
/// which ends the answer. Fields are only ever added, optional: an older reader ignores them.
/// </summary>
internal sealed record ProcessorFrame
{
    public const string StartType = "start";
    public const string DeltaType = "delta";
    public const string ErrorType = "error";

    [JsonPropertyName("t")]
    public required string Type { get; init; }

    // start
    [JsonPropertyName("choices")]
    public int Choices { get; init; }

    [JsonPropertyName("n")]
    public int N { get; init; }

    [JsonPropertyName("prompt_tokens")]
    public int PromptTokens { get; init; }

    [JsonPropertyName("stream")]
    public bool Stream { get; init; }

    [JsonPropertyName("include_usage")]
    public bool IncludeUsage { get; init; }

    [JsonPropertyName("logprobs")]
    public int Logprobs { get; init; }

    [JsonPropertyName("top_logprobs")]
    public int TopLogprobs { get; init; }

    // delta
    [JsonPropertyName("index")]
    public int Index { get; init; }

    [JsonPropertyName("text")]
    public string? Text { get; init; }

    [JsonPropertyName("token_logprobs")]
    public IReadOnlyList<ChatTokenLogprob>? TokenLogprobs { get; init; }

    [JsonPropertyName("text_offset")]
    public int TextOffset { get; init; }

    [JsonPropertyName("finish_reason")]
    public string? FinishReason { get; init; }

    [JsonPropertyName("new_tokens")]
    public int NewTokens { get; init; }

    [JsonPropertyName("completion_tokens")]
    public int CompletionTokens { get; init; }

    [JsonPropertyName("cached_tokens")]
    public int CachedTokens { get; init; }

    /// <summary>
    /// The worker's token ids of the delta (new_tokens of them), what the frontend resumes from on another
    /// processor if this one fails. Absent from older processors' frames: their requests do not migrate.
    /// </summary>
    [JsonPropertyName("token_ids")]
    public IReadOnlyList<int>? TokenIds { get; init; }

    // error
    [JsonPropertyName("status")]
    public int Status { get; init; }

    [JsonPropertyName("retry_after")]
    public int? RetryAfter { get; init; }

    [JsonPropertyName("error")]
    public ErrorDetail? Error { get; init; }
}

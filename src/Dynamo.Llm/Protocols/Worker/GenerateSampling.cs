using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>Sampling fields of a <see cref="GenerateRequest"/>; absent fields take the engine's defaults.</summary>
public sealed record GenerateSampling
{
    /// <summary>0 = greedy; 0..2.</summary>
    [JsonPropertyName("temperature")]
    public float? Temperature { get; init; }

    /// <summary>0 or -1 = all.</summary>
    [JsonPropertyName("top_k")]
    public int? TopK { get; init; }

    /// <summary>(0, 1].</summary>
    [JsonPropertyName("top_p")]
    public float? TopP { get; init; }

    /// <summary>0..1.</summary>
    [JsonPropertyName("min_p")]
    public float? MinP { get; init; }

    /// <summary>Seed for reproducible sampling.</summary>
    [JsonPropertyName("seed")]
    public ulong? Seed { get; init; }

    /// <summary>(0, 2].</summary>
    [JsonPropertyName("repetition_penalty")]
    public float? RepetitionPenalty { get; init; }

    /// <summary>-2..2.</summary>
    [JsonPropertyName("frequency_penalty")]
    public float? FrequencyPenalty { get; init; }

    /// <summary>-2..2.</summary>
    [JsonPropertyName("presence_penalty")]
    public float? PresencePenalty { get; init; }

    /// <summary>Most tokens to generate.</summary>
    [JsonPropertyName("max_tokens")]
    public int? MaxTokens { get; init; }

    /// <summary>Keep going past end-of-sequence tokens.</summary>
    [JsonPropertyName("ignore_eos")]
    public bool? IgnoreEos { get; init; }

    /// <summary>Extra token ids that stop generation.</summary>
    [JsonPropertyName("stop_token_ids")]
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Return each token's log probability.</summary>
    [JsonPropertyName("logprobs")]
    public bool? Logprobs { get; init; }

    /// <summary>Alternatives per position (0..20).</summary>
    [JsonPropertyName("top_logprobs")]
    public int? TopLogprobs { get; init; }
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>The fields chat and text completion requests share (OpenAI names; unknown fields are ignored).</summary>
public abstract record OpenAiRequestBase
{
    /// <summary>The served model name.</summary>
    [JsonPropertyName("model")]
    public string? Model { get; init; }

    /// <summary>Most tokens to generate (at least 1).</summary>
    [JsonPropertyName("max_tokens")]
    public int? MaxTokens { get; init; }

    /// <summary>0..2; 0 is greedy.</summary>
    [JsonPropertyName("temperature")]
    public float? Temperature { get; init; }

    /// <summary>(0, 1].</summary>
    [JsonPropertyName("top_p")]
    public float? TopP { get; init; }

    /// <summary>-1 or 0 = all, else the k most likely tokens.</summary>
    [JsonPropertyName("top_k")]
    public int? TopK { get; init; }

    /// <summary>0..1.</summary>
    [JsonPropertyName("min_p")]
    public float? MinP { get; init; }

    /// <summary>Choices per prompt, 1..128.</summary>
    [JsonPropertyName("n")]
    public int? N { get; init; }

    /// <summary>A string or an array of strings.</summary>
    [JsonPropertyName("stop")]
    public JsonElement? Stop { get; init; }

    /// <summary>Makes sampling reproducible.</summary>
    [JsonPropertyName("seed")]
    public long? Seed { get; init; }

    /// <summary>-2..2.</summary>
    [JsonPropertyName("presence_penalty")]
    public float? PresencePenalty { get; init; }

    /// <summary>-2..2.</summary>
    [JsonPropertyName("frequency_penalty")]
    public float? FrequencyPenalty { get; init; }

    /// <summary>(0, 2].</summary>
    [JsonPropertyName("repetition_penalty")]
    public float? RepetitionPenalty { get; init; }

    /// <summary>Keep generating past end-of-sequence tokens.</summary>
    [JsonPropertyName("ignore_eos")]
    public bool? IgnoreEos { get; init; }

    /// <summary>Extension settings (KV routing overrides).</summary>
    [JsonPropertyName("nvext")]
    public NvExt? NvExt { get; init; }

    /// <summary>Admission priority under load: lower is served earlier (vLLM's convention), default 0; the X-Request-Priority header wins.</summary>
    [JsonPropertyName("priority")]
    public int? Priority { get; init; }

    /// <summary>The request's deadline in seconds from its arrival (with X-Request-Timeout, the shorter one; never past --request-timeout).</summary>
    [JsonPropertyName("timeout")]
    public double? Timeout { get; init; }

    /// <summary>Server-sent events instead of one JSON object.</summary>
    [JsonPropertyName("stream")]
    public bool? Stream { get; init; }

    /// <summary>Streaming options.</summary>
    [JsonPropertyName("stream_options")]
    public StreamOptions? StreamOptions { get; init; }

    /// <summary>Token id -> bias: not supported (anything but null or an empty object is refused with a 400).</summary>
    [JsonPropertyName("logit_bias")]
    public JsonElement? LogitBias { get; init; }

    /// <summary>Fewest tokens to generate: not supported (anything but null or 0 is refused with a 400).</summary>
    [JsonPropertyName("min_tokens")]
    public JsonElement? MinTokens { get; init; }

    /// <summary>The end user (logged, otherwise ignored).</summary>
    [JsonPropertyName("user")]
    public string? User { get; init; }
}

using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>
/// The request extension field <c>nvext</c> (the original system's name for it): per-request settings
/// beyond OpenAI's. Unknown members are ignored.
/// </summary>
public sealed record NvExt
{
    /// <summary>KV routing: weight of the prefill (cache overlap) term for this request (0 or more).</summary>
    [JsonPropertyName("kv_overlap_score_weight")]
    public double? KvOverlapScoreWeight { get; init; }

    /// <summary>KV routing: softmax temperature for this request (0 = lowest cost).</summary>
    [JsonPropertyName("router_temperature")]
    public double? RouterTemperature { get; init; }
}

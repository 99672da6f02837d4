using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>
/// On the last response of a request that a router asked to prefill remotely (<see cref="GenerateRequest.RemotePrefill"/>):
/// where its prefill ran and what the transfer cost. On the last response of a prefill worker's request with
/// <see cref="GenerateRequest.KvTransfer"/>: the transfer as the sender saw it.
/// </summary>
public sealed record PrefillReport
{
    /// <summary>True when the KV came from the prefill worker; false when the decode worker prefilled locally.</summary>
    [JsonPropertyName("remote")]
    public bool Remote { get; init; }

    /// <summary>The prefill worker's instance id.</summary>
    [JsonPropertyName("prefill_instance_id")]
    public long PrefillInstanceId { get; init; }

    /// <summary>Why the prefill ran locally after all (null when remote).</summary>
    [JsonPropertyName("fallback_reason")]
    public string? FallbackReason { get; init; }

    /// <summary>Milliseconds from sending the prefill request to the KV's arrival (remote only).</summary>
    [JsonPropertyName("prefill_ms")]
    public double? PrefillMs { get; init; }

    /// <summary>Milliseconds the KV transfer itself took.</summary>
    [JsonPropertyName("transfer_ms")]
    public double? TransferMs { get; init; }

    /// <summary>Bytes of KV transferred.</summary>
    [JsonPropertyName("transfer_bytes")]
    public long? TransferBytes { get; init; }

    /// <summary>Prompt tokens whose KV was transferred.</summary>
    [JsonPropertyName("transfer_tokens")]
    public int? TransferTokens { get; init; }

    /// <summary>
    /// Bytes of each part when the KV went in parts (a tensor-parallel prefill worker: one per rank, its own heads, in
    /// rank order); null when it went whole.
    /// </summary>
    [JsonPropertyName("transfer_part_bytes")]
    public IReadOnlyList<long>? TransferPartBytes { get; init; }
}

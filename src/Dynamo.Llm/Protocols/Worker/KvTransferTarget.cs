using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>
/// On a request to a prefill worker: compute the prompt's KV cache (the response's one token is not used)
/// and push it to this transfer address under this id before the last response (Components/KvTransfer).
/// </summary>
public sealed record KvTransferTarget
{
    /// <summary>The decode worker's transfer address, <c>tcp://HOST:PORT</c>.</summary>
    [JsonPropertyName("address")]
    public required string Address { get; init; }

    /// <summary>The transfer the decode worker expects.</summary>
    [JsonPropertyName("transfer_id")]
    public required string TransferId { get; init; }

    /// <summary>The decode worker's instance id (logs).</summary>
    [JsonPropertyName("decode_instance_id")]
    public long DecodeInstanceId { get; init; }

    /// <summary>The decode worker's model fingerprint (its weights): a prefill worker of another model refuses with <c>model_mismatch</c>.</summary>
    [JsonPropertyName("model_fingerprint")]
    public string? ModelFingerprint { get; init; }
}

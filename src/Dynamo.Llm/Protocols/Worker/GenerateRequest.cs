using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>
/// The payload of a worker's <c>generate</c> endpoint (JSON, snake_case, version 1; see README.md):
/// token ids in, because chat templates and tokenization run before routing. Unknown fields are ignored;
/// a missing or newer major <see cref="Version"/> is refused with a clear error.
/// </summary>
public sealed record GenerateRequest
{
    /// <summary>The protocol version this build speaks.</summary>
    public const int CurrentVersion = 1;

    /// <summary>Protocol version (1).</summary>
    [JsonPropertyName("version")]
    public int Version { get; init; }

    /// <summary>The request id, for logs and cancellation.</summary>
    [JsonPropertyName("request_id")]
    public string? RequestId { get; init; }

    /// <summary>The prompt's token ids.</summary>
    [JsonPropertyName("token_ids")]
    public IReadOnlyList<int>? TokenIds { get; init; }

    /// <summary>Sampling and stopping.</summary>
    [JsonPropertyName("sampling")]
    public GenerateSampling? Sampling { get; init; }

    /// <summary>Disaggregated serving, to a decode worker: prefill remotely there (absent: prefill locally).</summary>
    [JsonPropertyName("remote_prefill")]
    public RemotePrefill? RemotePrefill { get; init; }

    /// <summary>Disaggregated serving, to a prefill worker: push the prompt's KV cache there.</summary>
    [JsonPropertyName("kv_transfer")]
    public KvTransferTarget? KvTransfer { get; init; }
}

using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>
/// On a request to a decode worker (disaggregated serving): prefill the prompt on this prefill worker, which
/// pushes the KV cache back over the transfer plane, instead of locally. The router that chose both workers
/// sets it; the decode worker falls back to a local prefill whenever the remote one cannot be done.
/// </summary>
public sealed record RemotePrefill
{
    /// <summary>The prefill workers' generate endpoint, <c>namespace.component.endpoint</c>.</summary>
    [JsonPropertyName("endpoint")]
    public required string Endpoint { get; init; }

    /// <summary>The chosen prefill worker's instance id.</summary>
    [JsonPropertyName("instance_id")]
    public required long InstanceId { get; init; }

    /// <summary>The prefill worker's data-parallel rank the router chose (absent: that worker picks its least loaded rank).</summary>
    [JsonPropertyName("dp_rank")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DpRank { get; init; }
}

using System.Text.Json.Serialization;

namespace Dynamo.Components.Parallel;

/// <summary>What a rank other than 0 tells rank 0 when it joins (Parallel/README.md, "Rendezvous").</summary>
internal sealed record RendezvousHello
{
    [JsonPropertyName("v")]
    public int Version { get; init; } = Rendezvous.Version;

    [JsonPropertyName("rank")]
    public int Rank { get; init; }

    [JsonPropertyName("size")]
    public int Size { get; init; }

    [JsonPropertyName("nnodes")]
    public int NodeCount { get; init; }

    [JsonPropertyName("node_rank")]
    public int NodeRank { get; init; }

    /// <summary>Ranks with the same host id share memory (when the transport allows).</summary>
    [JsonPropertyName("host_id")]
    public string HostId { get; init; } = "";

    /// <summary>The port this rank accepts its data connections on (the host is the one rank 0 sees it connect from).</summary>
    [JsonPropertyName("data_port")]
    public int DataPort { get; init; }

    /// <summary>The agreement's fingerprint (base64 in JSON).</summary>
    [JsonPropertyName("agreement")]
    public byte[] Agreement { get; init; } = [];

    [JsonPropertyName("agreement_text")]
    public string AgreementText { get; init; } = "";
}

using System.Text.Json.Serialization;

namespace Dynamo.Components.Parallel;

/// <summary>One rank in rank 0's answer: where to connect to it for data, and its host id.</summary>
internal sealed record RendezvousPeer
{
    [JsonPropertyName("rank")]
    public int Rank { get; init; }

    [JsonPropertyName("host")]
    public string Host { get; init; } = "";

    [JsonPropertyName("port")]
    public int Port { get; init; }

    [JsonPropertyName("host_id")]
    public string HostId { get; init; } = "";
}

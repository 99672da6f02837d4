using System.Text.Json.Serialization;

namespace Dynamo.Components.Parallel;

/// <summary>Rank 0's answer to a hello: the peer table (every rank, index = rank) and the group's session, or a refusal.</summary>
internal sealed record RendezvousReply
{
    [JsonPropertyName("v")]
    public int Version { get; init; } = Rendezvous.Version;

    [JsonPropertyName("ok")]
    public bool Ok { get; init; }

    /// <summary>Why the rank is refused: the one line rank 0 fails with too.</summary>
    [JsonPropertyName("error")]
    public string? Error { get; init; }

    /// <summary>A random id of this group, which every data connection and the shared-memory file carry.</summary>
    [JsonPropertyName("session")]
    public ulong Session { get; init; }

    [JsonPropertyName("peers")]
    public RendezvousPeer[] Peers { get; init; } = [];
}

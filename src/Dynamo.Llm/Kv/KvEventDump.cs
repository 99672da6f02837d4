using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>
/// A worker's whole cached set as of <paramref name="LastEventId"/>, as stored-data groups (each
/// group's blocks chain from its parent hash as in a <see cref="KvStoredData"/> event; a group's parent
/// comes in an earlier group or is null). Loading it and then applying the events after
/// <paramref name="LastEventId"/> gives exactly the worker's cached set (see Kv/README.md).
/// JSON: <c>{"worker_id":7,"last_event_id":42,"stored":[...]}</c>, with <c>"dp_rank":1</c> for a data-parallel
/// rank other than 0 (<see cref="KvEventJson"/>). Equality compares the groups element by element.
/// </summary>
public sealed record KvEventDump(long WorkerId, ulong LastEventId, IReadOnlyList<KvStoredData> Stored)
{
    /// <summary>The worker's data-parallel rank whose cache this is (0 for a worker with one engine).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int DpRank { get; init; }

    public bool Equals(KvEventDump? other) =>
        other is not null && WorkerId == other.WorkerId && DpRank == other.DpRank && LastEventId == other.LastEventId
        && Stored.SequenceEqual(other.Stored);

    public override int GetHashCode() => HashCode.Combine(WorkerId, DpRank, LastEventId, Stored.Count);
}

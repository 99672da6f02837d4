using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>
/// One change to one KV cache: a worker's, or one data-parallel rank's of a worker that runs several engine
/// replicas (--dp-size). Ids are per (worker, rank), start at 1 and grow by exactly 1, so a consumer can tell a
/// missed event from a duplicate (see <see cref="KvCachedSet.Apply"/>).
/// JSON: <c>{"worker_id":7,"event_id":12,"data":...}</c>, with <c>"dp_rank":1</c> for a rank other than 0
/// (<see cref="KvEventJson"/>).
/// </summary>
/// <param name="WorkerId">The worker whose cache changed.</param>
/// <param name="EventId">This event's position in the (worker, rank) stream, from 1.</param>
/// <param name="Data">What changed.</param>
/// <param name="DpRank">The worker's data-parallel rank whose cache changed (0 for a worker with one engine).</param>
public sealed record KvEvent(
    long WorkerId,
    ulong EventId,
    KvEventData Data,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] int DpRank = 0);

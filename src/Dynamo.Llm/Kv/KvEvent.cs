namespace Dynamo.Llm.Kv;

/// <summary>
/// One change to one worker's KV cache. Ids are per worker, start at 1 and grow by exactly 1, so a
/// consumer can tell a missed event from a duplicate (see <see cref="KvCachedSet.Apply"/>).
/// JSON: <c>{"worker_id":7,"event_id":12,"data":...}</c> (<see cref="KvEventJson"/>).
/// </summary>
/// <param name="WorkerId">The worker whose cache changed.</param>
/// <param name="EventId">This event's position in the worker's stream, from 1.</param>
/// <param name="Data">What changed.</param>
public sealed record KvEvent(long WorkerId, ulong EventId, KvEventData Data);

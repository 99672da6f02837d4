using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>
/// What a <see cref="KvEvent"/> says happened to a worker's KV cache: <see cref="KvStoredData"/>,
/// <see cref="KvRemovedData"/> or <see cref="KvClearedData"/>. On the wire an externally tagged union:
/// <c>{"stored":{...}}</c>, <c>{"removed":{...}}</c> or <c>"cleared"</c>.
/// </summary>
[JsonConverter(typeof(KvEventDataJsonConverter))]
public abstract record KvEventData;

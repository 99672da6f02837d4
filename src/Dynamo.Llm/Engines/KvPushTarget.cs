namespace Dynamo.Llm.Engines;

/// <summary>Where a prefill's KV goes (<see cref="EngineRequest.PushKvTo"/>): a decode worker's transfer address and the transfer id it expects.</summary>
public sealed record KvPushTarget(string Address, string TransferId);

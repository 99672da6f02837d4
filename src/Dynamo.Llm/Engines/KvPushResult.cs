namespace Dynamo.Llm.Engines;

/// <summary>
/// How an engine that pushes its KV itself (a tensor-parallel one: each rank its own heads, see
/// <see cref="EngineRequest.PushKvTo"/>) delivered it: the bytes of each part, in rank order, and the slowest part's
/// time; or, when any part failed, why.
/// </summary>
/// <param name="PartBytes">Bytes of each part pushed (one per rank).</param>
/// <param name="Elapsed">The longest push of the parts (they go at once).</param>
/// <param name="Failure">Null when every part was acknowledged; else one line per failed part, naming its rank.</param>
public sealed record KvPushResult(IReadOnlyList<long> PartBytes, TimeSpan Elapsed, string? Failure)
{
    /// <summary>Bytes of all the parts.</summary>
    public long Bytes => PartBytes.Sum();
}

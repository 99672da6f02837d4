namespace Dynamo.Llm.Routing;

/// <summary>
/// A completed request's prompt blocks that the <see cref="InflightLedger"/> counts as cached on its worker: the first
/// <paramref name="Count"/> of <paramref name="Hashes"/> (a reused array), remembered at timestamp <paramref name="At"/>.
/// </summary>
internal readonly record struct RememberedPrefix(ulong[] Hashes, int Count, long At);

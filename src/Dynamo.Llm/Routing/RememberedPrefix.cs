namespace Dynamo.Llm.Routing;

/// <summary>
/// A completed request's prompt blocks that the <see cref="InflightLedger"/> counts as cached on its worker: the tracked
/// hashes (<see cref="TrackedBlocks"/>) of a prompt of <paramref name="Blocks"/> full blocks, first in
/// <paramref name="Hashes"/> (a reused array), remembered at timestamp <paramref name="At"/>.
/// </summary>
internal readonly record struct RememberedPrefix(ulong[] Hashes, int Blocks, long At);

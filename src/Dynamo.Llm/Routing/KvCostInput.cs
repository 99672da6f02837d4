namespace Dynamo.Llm.Routing;

/// <summary>What <see cref="KvCost"/> looks at for one (request, worker) pair.</summary>
/// <param name="PromptTokens">P: the request's prompt tokens.</param>
/// <param name="BlockSize">B: tokens per KV block.</param>
/// <param name="OverlapBlocks">Leading prompt blocks expected cached on the worker (indexed, in flight or recently completed).</param>
/// <param name="InflightOverlapBlocks">Leading prompt blocks held by the worker's requests in flight.</param>
/// <param name="ActivePrefillTokens">Uncached prompt tokens of the worker's requests before their first token.</param>
/// <param name="ActiveBlocks">KV blocks of the worker's requests in flight, as the router counts them.</param>
/// <param name="ReportedBlocksUsed">KV blocks in use in the worker's own latest report, faded by age.</param>
/// <param name="CachedBlocks">Blocks the KV index holds for the worker.</param>
/// <param name="PoolBlocks">The worker's reported pool size in blocks; 0 when not known yet.</param>
/// <param name="OverlapScoreWeight">Weight of a prefill block against a decode block.</param>
public readonly record struct KvCostInput(
    int PromptTokens, int BlockSize, int OverlapBlocks, int InflightOverlapBlocks, long ActivePrefillTokens, long ActiveBlocks,
    double ReportedBlocksUsed, int CachedBlocks, int PoolBlocks, double OverlapScoreWeight)
{
    /// <summary>
    /// Leading prompt blocks that most candidate workers hold (<see cref="KvCost.CommonOverlap"/>): the prefill term counts
    /// them as held by every worker, so that a prefix nearly all workers share is no reason to avoid the few that lack it.
    /// </summary>
    public int CommonOverlapBlocks { get; init; }
}

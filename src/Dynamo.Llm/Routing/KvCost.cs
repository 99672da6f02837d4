namespace Dynamo.Llm.Routing;

/// <summary>
/// The KV router's cost of sending a request to one worker (Routing/README.md, "Cost"): lower is better. A
/// pure function of what the router knows about the request and the worker, so that its rules are tested
/// as a table (KvCostTests) apart from the router's bookkeeping.
/// </summary>
public static class KvCost
{
    /// <summary>
    /// weight x prefill blocks + decode blocks + evicted blocks, where prefill blocks = (P - max(overlap, common) x B +
    /// active prefill tokens) / B, decode blocks = max(active blocks, reported blocks) + (R - in-flight overlap),
    /// evicted blocks = max(0, min(cached, pool) + (R - overlap) - pool) (0 while the pool size is unknown); P prompt
    /// tokens, B block size, R = ceil(P / B).
    /// </summary>
    public static double Of(in KvCostInput input) =>
        (input.OverlapScoreWeight * PrefillBlocks(input)) + DecodeBlocks(input) + EvictedBlocks(input);

    /// <summary>
    /// Blocks of prompt the worker would still have to compute before this request's first token: its queued prefill plus this
    /// request's uncached part, the blocks most workers hold (<see cref="KvCostInput.CommonOverlapBlocks"/>) counted as cached.
    /// </summary>
    public static double PrefillBlocks(in KvCostInput input) =>
        (input.PromptTokens - ((long)Math.Max(input.OverlapBlocks, input.CommonOverlapBlocks) * input.BlockSize) + input.ActivePrefillTokens) / (double)input.BlockSize;

    /// <summary>
    /// The leading blocks of a request held by at least three quarters of the <paramref name="candidates"/> workers, from
    /// <paramref name="histogram"/>[d] = candidates whose overlap is exactly d (d = 0..request blocks; read, not kept).
    /// A worker that lacks only such a prefix (one that joined or was idle while the others warmed up: every prompt of a
    /// chat service starts with the same template and system prompt) would otherwise lose every request to an idle holder
    /// and never be used; counted as holding it, it pays that prefill once and is a holder from then on. Three quarters,
    /// not a half, so that a prefix on one of two workers, or on a few of eight, still draws its requests.
    /// </summary>
    public static int CommonOverlap(ReadOnlySpan<int> histogram, int candidates)
    {
        int need = ((3 * candidates) + 3) / 4;
        int atLeast = 0;
        for (int d = histogram.Length - 1; d > 0; d--)
        {
            atLeast += histogram[d];
            if (atLeast >= need)
            {
                return d;
            }
        }

        return 0;
    }

    /// <summary>KV blocks the worker would hold while decoding: what it holds now (the larger of the router's count and its own report) plus this request's blocks not already held by its requests in flight.</summary>
    public static double DecodeBlocks(in KvCostInput input) =>
        Math.Max(input.ActiveBlocks, input.ReportedBlocksUsed) + (RequestBlocks(input) - input.InflightOverlapBlocks);

    /// <summary>
    /// Cached blocks that storing this request's new blocks would push out of the worker's pool (0 while its pool size
    /// is unknown). The cached count is taken at most the pool: an index claiming more (events of evictions lost) is
    /// wrong by construction, and must not make its worker look busier than one whose index is right.
    /// </summary>
    public static int EvictedBlocks(in KvCostInput input) =>
        input.PoolBlocks <= 0 ? 0 : Math.Max(0, Math.Min(input.CachedBlocks, input.PoolBlocks) + (RequestBlocks(input) - input.OverlapBlocks) - input.PoolBlocks);

    /// <summary>The request's blocks, the partial tail included: ceil(P / B).</summary>
    public static int RequestBlocks(in KvCostInput input) => (input.PromptTokens + input.BlockSize - 1) / input.BlockSize;
}

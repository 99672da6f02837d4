using Dynamo.Llm.Routing;

namespace Dynamo.Tests.Llm.Routing;

/// <summary>The KV router's cost rules, row by row (Routing/README.md, "Cost"): each row changes one thing.</summary>
public sealed class KvCostTests
{
    public static TheoryData<string, KvCostInput, double> Rows => new()
    {
        // name, (P, B, overlap, inflight overlap, active prefill, active blocks, reported, cached, pool, weight), cost
        { "empty worker: all prefill and all blocks", new(32, 16, 0, 0, 0, 0, 0, 0, 0, 4), (4 * 2) + 2 },
        { "whole prompt cached: no prefill", new(32, 16, 2, 0, 0, 0, 0, 0, 0, 4), 2 },
        { "partial tail: half a block to prefill, three blocks", new(40, 16, 2, 0, 0, 0, 0, 0, 0, 4), (4 * 0.5) + 3 },
        { "queued prefill adds to this one's", new(32, 16, 0, 0, 64, 0, 0, 0, 0, 4), (4 * 6) + 2 },
        { "blocks held by requests in flight are not counted twice", new(32, 16, 2, 2, 0, 2, 0, 0, 0, 4), 2 },
        { "a report above the router's count wins", new(32, 16, 0, 0, 0, 1, 5.5, 0, 0, 4), (4 * 2) + 5.5 + 2 },
        { "the router's count above a report wins", new(32, 16, 0, 0, 0, 7, 5.5, 0, 0, 4), (4 * 2) + 7 + 2 },
        { "new blocks that overflow the pool evict", new(32, 16, 0, 0, 0, 0, 0, 9, 10, 4), (4 * 2) + 2 + 1 },
        { "a cached prefix adds no block: nothing evicted", new(32, 16, 2, 0, 0, 0, 0, 10, 10, 4), 2 },
        { "pool size not known yet: no eviction term", new(32, 16, 0, 0, 0, 0, 0, 100, 0, 4), (4 * 2) + 2 },
        { "weight 1: prefill and decode blocks alike", new(32, 16, 0, 0, 0, 0, 0, 0, 0, 1), 2 + 2 },
        { "weight 0: decode blocks only", new(32, 16, 0, 0, 64, 0, 0, 0, 0, 0), 2 },
        { "block size 1", new(5, 1, 3, 3, 0, 3, 0, 0, 0, 4), (4 * 2) + 3 + 2 },
        { "a prefix most workers hold counts as held", new(32, 16, 0, 0, 0, 0, 0, 0, 0, 4) { CommonOverlapBlocks = 1 }, (4 * 1) + 2 },
        { "a common prefix shorter than the worker's own changes nothing", new(32, 16, 2, 0, 0, 0, 0, 0, 0, 4) { CommonOverlapBlocks = 1 }, 2 },
        { "a common prefix does not hide the eviction of the blocks the worker lacks", new(32, 16, 0, 0, 0, 0, 0, 10, 10, 4) { CommonOverlapBlocks = 2 }, 2 + 2 },
    };

    [Theory]
    [InlineData(new[] { 0, 2, 2, 3 }, 2)] // three of four hold two blocks
    [InlineData(new[] { 3, 3, 3, 3 }, 3)]
    [InlineData(new[] { 0, 5 }, 0)] // one of two: a prefix to route to, not a common one
    [InlineData(new[] { 4, 4, 4, 4, 4, 0, 0, 0 }, 0)] // five of eight
    [InlineData(new[] { 4, 4, 4, 4, 4, 4, 0, 0 }, 4)] // six of eight
    [InlineData(new int[0], 0)]
    public void CommonOverlap_DepthThreeQuartersOfTheCandidatesHold(int[] overlaps, int expected)
    {
        int[] histogram = new int[(overlaps.Length == 0 ? 0 : overlaps.Max()) + 1];
        foreach (int o in overlaps)
        {
            histogram[o]++;
        }

        Assert.Equal(expected, KvCost.CommonOverlap(histogram, overlaps.Length));
    }

    [Theory]
    [MemberData(nameof(Rows))]
    public void Of_Row_IsTheRowsCost(string name, KvCostInput input, double expected)
    {
        Assert.True(expected == KvCost.Of(input), $"{name}: expected {expected}, got {KvCost.Of(input)}");
    }

    [Fact]
    public void Of_IsTheSumOfItsTerms()
    {
        var input = new KvCostInput(100, 16, 3, 1, 40, 12, 20.25, 50, 60, 2.5);
        Assert.Equal(7, KvCost.RequestBlocks(input));
        Assert.Equal((100 - 48 + 40) / 16.0, KvCost.PrefillBlocks(input));
        Assert.Equal(20.25 + (7 - 1), KvCost.DecodeBlocks(input));
        Assert.Equal(0, KvCost.EvictedBlocks(input));
        Assert.Equal((2.5 * KvCost.PrefillBlocks(input)) + KvCost.DecodeBlocks(input), KvCost.Of(input));
    }

    [Fact]
    public async Task RouteAsync_Decision_CostIsKvCostOfTheWorkersState()
    {
        var router = new KvRouter(KvRouterOptions.Default with { BlockSize = 16, Seed = 1 });
        router.AddWorker(1);
        using RoutingDecision first = await router.RouteAsync([.. Enumerable.Range(0, 40)]);
        Assert.Equal(KvCost.Of(new KvCostInput(40, 16, 0, 0, 0, 0, 0, 0, 0, 4)), first.Cost);

        // The second request shares the first's two full blocks in flight: overlap 2, the first's prefill queued.
        using RoutingDecision second = await router.RouteAsync([.. Enumerable.Range(0, 33)]);
        Assert.Equal(KvCost.Of(new KvCostInput(33, 16, 2, 2, 40, 3, 0, 0, 0, 4)), second.Cost);
    }
}

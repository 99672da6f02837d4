using Dynamo.Llm.Kv;
using Dynamo.Llm.Routing;
using Dynamo.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Dynamo.Tests.Llm.Routing;

/// <summary>Routing that checks itself: predicted against actual cached blocks per worker, and a resync when they part.</summary>
public sealed class KvRouterAccuracyTests(ITestOutputHelper output)
{
    private const int BlockSize = 16;

    private static int[] Prompt(int seed, int tokens) => [.. Enumerable.Range(0, tokens).Select(i => (seed * 7919) + i)];

    private KvRouter Create(int workers, KvRouterOptions? options, out TestOutputLogger logger)
    {
        logger = new TestOutputLogger(output, "router");
        var router = new KvRouter((options ?? KvRouterOptions.Default) with { BlockSize = BlockSize, Seed = 7 }, logger: logger);
        for (int w = 1; w <= workers; w++)
        {
            router.AddWorker(w);
        }

        return router;
    }

    private static void Cache(KvRouter router, long worker, int[] tokens) => KvRouterTests.Cache(router, worker, tokens);

    private static RoutingDecision Route(KvRouter router, int[] tokens)
    {
        ValueTask<RoutingDecision> task = router.RouteAsync(tokens);
        Assert.True(task.IsCompletedSuccessfully);
        return task.AsTask().Result;
    }

    [Fact]
    public void StaleIndex_OverClaimsForAWindow_WorkerResyncedOnceWithLogLineAndCounters()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { AccuracyWindow = 8, RecentPrefixWindow = TimeSpan.Zero }, out TestOutputLogger logger);
        var asked = new List<RoutingTarget>();
        router.ResyncNeeded += asked.Add;

        // The index says worker 1 caches 8 prompts of 4 full blocks; its engine lost them all (a restart, evictions never heard of).
        int[][] prompts = [.. Enumerable.Range(1, 8).Select(i => Prompt(i, (4 * BlockSize) + 8))];
        foreach (int[] p in prompts)
        {
            Cache(router, 1, p);
        }

        for (int i = 0; i < 7; i++)
        {
            RoutingDecision d = Route(router, prompts[i]);
            Assert.Equal(4, d.IndexedOverlapBlocks);
            d.Complete(actualCachedTokens: 0);
            Assert.Empty(asked); // the window is not full yet: nothing judged
        }

        Assert.Equal(0, router.GetStats().Workers[0].Accuracy);
        Assert.Empty(router.Index.WorkersNeedingResync);

        Route(router, prompts[7]).Complete(actualCachedTokens: 0);

        Assert.Equal([new RoutingTarget(1)], asked);
        Assert.Equal([new RoutingTarget(1)], router.Index.WorkersNeedingResync);
        RouterStats stats = router.GetStats();
        Assert.Equal(1, stats.AccuracyResyncs);
        Assert.Equal(1, stats.Workers[0].AccuracyResyncs);
        Assert.Equal(1, stats.Workers[0].Accuracy); // judged afresh from the resync on
        (EventId id, LogLevel level, string message) = Assert.Single(logger.Entries, e => e.Id.Id == 6103);
        Assert.Equal(LogLevel.Warning, level);
        Assert.Contains("fell to 0", message, StringComparison.Ordinal);
        Assert.Contains("over its last 8 requests", message, StringComparison.Ordinal);
        Assert.Contains("32 of 32 prompt blocks", message, StringComparison.Ordinal);
        Assert.Contains("resyncing its index", message, StringComparison.Ordinal);

        // The dump says what the worker really holds: nothing. The index agrees now, and predicts nothing.
        router.LoadDump(new RoutingTarget(1), new KvEventDump(1, 5, []));
        Assert.Empty(router.Index.WorkersNeedingResync);
        RoutingDecision after = Route(router, prompts[0]);
        Assert.Equal(0, after.IndexedOverlapBlocks);
        after.Complete(0);
        Assert.Equal(1, router.GetStats().AccuracyResyncs);
    }

    [Fact]
    public void IndexMissingStoredBlocks_UnderClaims_AlsoResyncs()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { AccuracyWindow = 4, RecentPrefixWindow = TimeSpan.Zero }, out _);
        var asked = new List<RoutingTarget>();
        router.ResyncNeeded += asked.Add;

        // The engine finds 3 of 4 blocks each time; the index (its stored events lost) predicted none.
        for (int i = 0; i < 4; i++)
        {
            RoutingDecision d = Route(router, Prompt(i, 4 * BlockSize));
            Assert.Equal(0, d.OverlapBlocks);
            d.Complete(actualCachedTokens: 3 * BlockSize);
        }

        Assert.Equal([new RoutingTarget(1)], asked);
    }

    [Fact]
    public void AccurateOrWithinOneBlock_NeverResyncs()
    {
        KvRouter router = Create(2, KvRouterOptions.Default with { AccuracyWindow = 4 }, out TestOutputLogger logger);
        var asked = new List<RoutingTarget>();
        router.ResyncNeeded += asked.Add;
        for (int i = 0; i < 40; i++)
        {
            int[] prompt = Prompt(i, 4 * BlockSize);
            Cache(router, 1 + (i % 2), prompt);
            RoutingDecision d = Route(router, prompt);
            Assert.Equal(1 + (i % 2), d.WorkerId);

            // An engine recomputes the last token of a fully cached prompt: one block less than claimed is no error.
            d.Complete(actualCachedTokens: i % 3 == 0 ? (3 * BlockSize) + 15 : 4 * BlockSize);
        }

        Assert.Empty(asked);
        RouterStats stats = router.GetStats();
        Assert.Equal(0, stats.AccuracyResyncs);
        Assert.All(stats.Workers, w => Assert.Equal(1, w.Accuracy));
        Assert.DoesNotContain(logger.Entries, e => e.Id.Id == 6103);
    }

    [Fact]
    public void NothingAtStake_NotJudged()
    {
        // Prompts that share nothing and find nothing: accuracy has nothing to say, whatever the count.
        KvRouter router = Create(1, KvRouterOptions.Default with { AccuracyWindow = 4 }, out _);
        for (int i = 0; i < 20; i++)
        {
            Route(router, Prompt(100 + i, 4 * BlockSize)).Complete(0);
        }

        Assert.Equal(0, router.GetStats().AccuracyResyncs);
        Assert.Equal(1, router.GetStats().Workers[0].Accuracy);
    }

    [Fact]
    public void TurnedOff_NeverResyncs()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { AccuracyWindow = 2, ResyncAccuracy = 0, RecentPrefixWindow = TimeSpan.Zero }, out _);
        int[] prompt = Prompt(1, 4 * BlockSize);
        Cache(router, 1, prompt);
        for (int i = 0; i < 10; i++)
        {
            Route(router, prompt).Complete(0);
        }

        Assert.Equal(0, router.GetStats().AccuracyResyncs);
        Assert.Empty(router.Index.WorkersNeedingResync);
    }

    [Fact]
    public void DecisionsMadeBeforeADump_DoNotJudgeTheRebuiltIndex()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { AccuracyWindow = 4, RecentPrefixWindow = TimeSpan.Zero }, out _);
        int[][] prompts = [.. Enumerable.Range(1, 4).Select(i => Prompt(i, 4 * BlockSize))];
        foreach (int[] p in prompts)
        {
            Cache(router, 1, p);
        }

        // Four requests routed on the stale index, still running when a dump rebuilds it.
        RoutingDecision[] running = [.. prompts.Select(p => Route(router, p))];
        router.LoadDump(new RoutingTarget(1), new KvEventDump(1, 4, []));
        foreach (RoutingDecision d in running)
        {
            d.Complete(0);
        }

        Assert.Equal(0, router.GetStats().AccuracyResyncs);
        Assert.Equal(1, router.GetStats().Workers[0].Accuracy);
    }

    [Fact]
    public void EachWorkerJudgedAlone()
    {
        KvRouter router = Create(2, KvRouterOptions.Default with { AccuracyWindow = 4, RecentPrefixWindow = TimeSpan.Zero }, out _);
        var asked = new List<RoutingTarget>();
        router.ResyncNeeded += asked.Add;
        for (int i = 0; i < 8; i++)
        {
            int worker = 1 + (i % 2);
            int[] prompt = Prompt(i, 4 * BlockSize);
            Cache(router, worker, prompt);
            RoutingDecision d = Route(router, prompt);
            Assert.Equal(worker, d.WorkerId);
            d.Complete(worker == 2 ? 0 : 4 * BlockSize); // worker 2 lost its cache; worker 1 is right
        }

        Assert.Equal([new RoutingTarget(2)], asked);
        RouterStats stats = router.GetStats();
        Assert.Equal(0, stats.Workers.Single(w => w.WorkerId == 1).AccuracyResyncs);
        Assert.Equal(1, stats.Workers.Single(w => w.WorkerId == 2).AccuracyResyncs);
    }

    [Theory]
    [InlineData(-0.1, 16, "--router-resync-accuracy")]
    [InlineData(1.5, 16, "--router-resync-accuracy")]
    [InlineData(double.NaN, 16, "--router-resync-accuracy")]
    [InlineData(0.5, 0, "--router-accuracy-window")]
    public void Options_OutOfRange_NameTheFlag(double accuracy, int window, string flag)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => (KvRouterOptions.Default with { ResyncAccuracy = accuracy, AccuracyWindow = window }).Validate());
        Assert.StartsWith(flag, e.Message, StringComparison.Ordinal);
    }
}

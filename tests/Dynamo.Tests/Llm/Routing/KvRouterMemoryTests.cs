using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Llm.Routing;

/// <summary>The remembered prefixes of completed requests: without KV events (the pool's eviction estimate), and with them.</summary>
public sealed class KvRouterMemoryTests
{
    private const int BlockSize = 16;
    private const int Workers = 4;

    private static readonly KvRouterOptions NoEvents = KvRouterOptions.Default with { UseKvEvents = false };

    private static int[] Prompt(int seed, int tokens) => [.. Enumerable.Range(0, tokens).Select(i => (seed * 7919) + i)];

    private static KvRouter Create(KvRouterOptions options, TimeProvider time)
    {
        var router = new KvRouter(options with { BlockSize = BlockSize, Seed = 42 }, time);
        for (int w = 1; w <= Workers; w++)
        {
            router.AddWorker(w);
        }

        return router;
    }

    private static RoutingDecision Route(KvRouter router, int[] tokens, long? only = null)
    {
        ValueTask<RoutingDecision> task = router.RouteAsync(tokens, only is long w ? new RouteOverrides { AllowedWorkers = new HashSet<long> { w } } : null);
        Assert.True(task.IsCompletedSuccessfully);
        return task.AsTask().Result;
    }

    /// <summary>Routes <paramref name="prompt"/>, checks its overlap (and worker, when given), and cancels it (nothing is remembered).</summary>
    private static void AssertRouted(KvRouter router, int[] prompt, int overlapBlocks, long? worker = null)
    {
        using RoutingDecision d = Route(router, prompt);
        Assert.Equal(overlapBlocks, d.OverlapBlocks);
        if (worker is long w)
        {
            Assert.Equal(w, d.WorkerId);
        }
    }

    private static void Report(KvRouter router, int totalBlocks)
    {
        for (int w = 1; w <= Workers; w++)
        {
            router.UpdateLoad(new WorkerLoad { WorkerId = w, KvBlocksTotal = totalBlocks, KvBlocksUsed = 0 });
        }
    }

    /// <summary>
    /// <paramref name="seconds"/> seconds of other traffic on <paramref name="worker"/>: a new 10-block prompt a second (charged, then
    /// cancelled, so only its new blocks count), and a load report from every worker each second.
    /// </summary>
    private static void Traffic(KvRouter router, ManualTimeProvider time, long worker, int seconds, ref int seed)
    {
        for (int s = 0; s < seconds; s++)
        {
            Route(router, Prompt(seed++, 10 * BlockSize), worker).Dispose();
            time.Advance(TimeSpan.FromSeconds(1));
            Report(router, 1000);
        }
    }

    [Fact]
    public void RouteAsync_NoKvEvents_NextTurnGoesToItsHolderWhileThePoolKeepsItOnly()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(NoEvents, time);
        Report(router, 1000);

        // 10 new blocks a second into a 1000-block pool: a freed block lasts about 100 s there.
        const long holder = 1;
        int seed = 100;
        Traffic(router, time, holder, 30, ref seed);
        int[] turn1 = Prompt(1, 40 * BlockSize);
        RoutingDecision first = Route(router, turn1, holder);
        first.MarkFirstToken();
        first.Complete(0);
        Traffic(router, time, holder, 60, ref seed);
        int[] turn2 = [.. turn1, .. Prompt(2, 5 * BlockSize)];
        using (RoutingDecision second = Route(router, turn2))
        {
            Assert.Equal(holder, second.WorkerId);
            Assert.Equal(40, second.OverlapBlocks);
            Assert.Equal(0, second.IndexedOverlapBlocks);
        }

        Traffic(router, time, holder, 45, ref seed); // 105 s after the first turn: evicted by the estimate
        AssertRouted(router, turn2, 0);
    }

    [Fact]
    public void RouteAsync_NoKvEventsWithFixedTtl_KeepsThePrefixForTheTtl()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(NoEvents with { PrefixTtl = TimeSpan.FromSeconds(300) }, time);
        Report(router, 1000);
        int[] turn1 = Prompt(1, 40 * BlockSize);
        RoutingDecision first = Route(router, turn1);
        first.Complete(0);

        int seed = 100;
        Traffic(router, time, first.WorkerId, 200, ref seed); // past the estimate (100 s), within the TTL
        AssertRouted(router, turn1, 40, first.WorkerId);
        time.Advance(TimeSpan.FromSeconds(100));
        AssertRouted(router, turn1, 0);
    }

    [Fact]
    public void RouteAsync_NoKvEventsBeforeAnyReport_UsesTheDefaultLifetime()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(NoEvents, time);
        int[] prompt = Prompt(3, 20 * BlockSize);
        RoutingDecision first = Route(router, prompt);
        first.Complete(0);

        time.Advance(PoolRetention.DefaultRetention - TimeSpan.FromSeconds(1));
        AssertRouted(router, prompt, 20, first.WorkerId);
        time.Advance(TimeSpan.FromSeconds(1));
        AssertRouted(router, prompt, 0);
    }

    [Fact]
    public void RouteAsync_NoKvEvents_RemembersAtMostThePoolPerWorkerOldestDroppedFirst()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(NoEvents, time);
        Report(router, 100);
        int[][] prompts = [.. Enumerable.Range(0, 5).Select(i => Prompt(10 + i, 40 * BlockSize))];
        foreach (int[] prompt in prompts)
        {
            Route(router, prompt, only: 1).Complete(0);
        }

        // 5 x 40 blocks into a 100-block pool: only the last two prompts are remembered (80 blocks).
        int[] overlaps = [.. prompts.Select(p =>
        {
            using RoutingDecision d = Route(router, p, only: 1);
            return d.OverlapBlocks;
        })];
        Assert.Equal([0, 0, 0, 40, 40], overlaps);
    }

    [Fact]
    public void ApplyEvent_NoKvEvents_IsIgnored()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(NoEvents, time);
        ulong[] hashes = BlockHasher.SequenceHashes(Prompt(4, 10 * BlockSize), BlockSize);
        KvApplyResult result = router.ApplyEvent(new KvEvent(1, 1, new KvStoredData(null, [.. hashes.Select(h => new KvStoredBlock(h, 0))])));
        Assert.Equal(KvApplyResult.Stale, result);
        Assert.Equal(0, router.Index.BlockCountOf(1));
    }

    [Fact]
    public void ApplyEvent_RemovedBlock_DropsItFromTheRememberedPrefix()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(KvRouterOptions.Default with { RecentPrefixWindow = TimeSpan.FromSeconds(60) }, time);
        int[] prompt = Prompt(5, 40 * BlockSize);
        ulong[] hashes = BlockHasher.SequenceHashes(prompt, BlockSize);
        RoutingDecision first = Route(router, prompt);
        long worker = first.WorkerId;
        first.Complete(0);
        Assert.Equal(KvApplyResult.Applied, router.ApplyEvent(new KvEvent(worker, 1, new KvStoredData(null, [.. hashes.Select(h => new KvStoredBlock(h, 0))]))));
        Assert.Equal(KvApplyResult.Applied, router.ApplyEvent(new KvEvent(worker, 2, new KvRemovedData([.. hashes[10..]]))));

        time.Advance(TimeSpan.FromSeconds(5));
        using (RoutingDecision second = Route(router, prompt))
        {
            Assert.Equal(worker, second.WorkerId);
            Assert.Equal(10, second.IndexedOverlapBlocks);
            Assert.Equal(10, second.OverlapBlocks); // not the 40 the remembered prefix held
        }

        Assert.Equal(KvApplyResult.Applied, router.ApplyEvent(new KvEvent(worker, 3, new KvClearedData())));
        AssertRouted(router, prompt, 0);
    }

    [Fact]
    public void ApplyEvent_RemovedBlockThenRememberedAgain_CountsTheNewPrefix()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(KvRouterOptions.Default with { RecentPrefixWindow = TimeSpan.FromSeconds(60) }, time);
        int[] prompt = Prompt(6, 20 * BlockSize);
        ulong[] hashes = BlockHasher.SequenceHashes(prompt, BlockSize);
        RoutingDecision first = Route(router, prompt, only: 2);
        first.Complete(0);
        router.ApplyEvent(new KvEvent(2, 1, new KvRemovedData([.. hashes])));
        Route(router, prompt, only: 2).Complete(0);

        AssertRouted(router, prompt, 20, worker: 2);
    }

    // Remembering reuses the arrays of the prefixes it drops: once warmed up a decision still allocates only itself.
    [Fact]
    public void RouteAsync_NoKvEventsWarmedUp_AllocatesOnlyTheDecision()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(NoEvents with { PrefixTtl = TimeSpan.FromSeconds(10) }, time);
        Report(router, 100_000);
        int[][] prompts = [.. Enumerable.Range(0, 8).Select(p => Prompt(20 + p, 1000 + p))];
        var inFlight = new RoutingDecision?[4];
        long Step(int i)
        {
            time.Advance(TimeSpan.FromMilliseconds(100)); // the fake clock's own allocations are not the router's
            long before = GC.GetAllocatedBytesForCurrentThread();
            ValueTask<RoutingDecision> task = router.RouteAsync(prompts[i % prompts.Length]);
            RoutingDecision decision = task.Result;
            decision.MarkFirstToken();
            inFlight[i % inFlight.Length]?.Complete(0);
            inFlight[i % inFlight.Length] = decision;
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        for (int i = 0; i < 2000; i++)
        {
            Step(i);
        }

        long allocated = 0;
        for (int i = 0; i < 1000; i++)
        {
            allocated += Step(i);
        }

        long perDecision = allocated / 1000;
        Assert.InRange(perDecision, 1, 128);
    }
}

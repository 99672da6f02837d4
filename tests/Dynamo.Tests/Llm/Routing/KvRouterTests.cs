using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Llm.Routing;

public sealed class KvRouterTests
{
    private const int BlockSize = 16;

    private static int[] Prompt(int seed, int tokens) => [.. Enumerable.Range(0, tokens).Select(i => (seed * 7919) + i)];

    private static KvRouter Create(int workers, KvRouterOptions? options = null, TimeProvider? time = null)
    {
        var router = new KvRouter((options ?? KvRouterOptions.Default) with { BlockSize = BlockSize, Seed = (options ?? KvRouterOptions.Default).Seed ?? 42 }, time);
        for (int w = 1; w <= workers; w++)
        {
            router.AddWorker(w);
        }

        return router;
    }

    /// <summary>Applies the next KV event of <paramref name="worker"/>: every full block of <paramref name="tokens"/> stored.</summary>
    internal static void Cache(KvRouter router, long worker, int[] tokens)
    {
        ulong[] hashes = BlockHasher.SequenceHashes(tokens, BlockSize);
        ulong next = router.Index.LastEventId(worker) + 1;
        Assert.Equal(KvApplyResult.Applied, router.ApplyEvent(new KvEvent(worker, next, new KvStoredData(null, [.. hashes.Select(h => new KvStoredBlock(h, 0))]))));
    }

    private static RoutingDecision Route(KvRouter router, int[] tokens, RouteOverrides? overrides = null)
    {
        ValueTask<RoutingDecision> task = router.RouteAsync(tokens, overrides);
        Assert.True(task.IsCompletedSuccessfully);
        return task.AsTask().Result;
    }

    [Fact]
    public void RouteAsync_IdenticalPrompt_LandsOnWorkerThatCachedIt()
    {
        KvRouter router = Create(4);
        int[] prompt = Prompt(1, 1000);
        Cache(router, 3, prompt);

        for (int i = 0; i < 20; i++)
        {
            using RoutingDecision d = Route(router, prompt);
            Assert.Equal(3, d.WorkerId);
            Assert.Equal(1000 / BlockSize, d.OverlapBlocks);
            Assert.Equal(1000 / BlockSize, d.IndexedOverlapBlocks);
            Assert.Equal(1000 / BlockSize * BlockSize, d.PredictedCachedTokens);
        }
    }

    [Fact]
    public void RouteAsync_WorkerLackingOnlyThePrefixMostHold_GetsItsShare()
    {
        // Workers 1-3 hold the system prompt every request starts with; worker 4 joined later and holds nothing. Counting
        // the system prompt for worker 1-3 only, worker 4 would lose every request to an idle holder and never be used.
        KvRouter router = Create(4);
        int[] system = Prompt(1, 4 * BlockSize);
        for (int w = 1; w <= 3; w++)
        {
            Cache(router, w, system);
        }

        var chosen = new List<long>();
        for (int i = 0; i < 40; i++)
        {
            using RoutingDecision d = Route(router, [.. system, .. Prompt(100 + i, 3 * BlockSize)]);
            chosen.Add(d.WorkerId);
            Assert.Equal(d.WorkerId == 4 ? 0 : 4, d.OverlapBlocks); // what it charges and predicts stays what the worker holds
        }

        Assert.Contains(4L, chosen);
    }

    [Fact]
    public void RouteAsync_PrefixOnOneOfTwoWorkers_NotCommonStillDrawsItsRequests()
    {
        KvRouter router = Create(2);
        int[] conversation = Prompt(1, 8 * BlockSize);
        Cache(router, 2, conversation);

        for (int i = 0; i < 20; i++)
        {
            using RoutingDecision d = Route(router, [.. conversation, .. Prompt(100 + i, 2 * BlockSize)]);
            Assert.Equal(2, d.WorkerId);
        }
    }

    [Fact]
    public void RouteAsync_LongPromptsInFlight_MatchedOnTrackedBlocksAndCountedAsDistinctLoad()
    {
        KvRouter router = Create(2);
        const int Blocks = 3000;
        int[] prompt = Prompt(5, Blocks * BlockSize);

        RoutingDecision first = Route(router, prompt);
        long Active() => router.GetStats().Workers.Single(w => w.WorkerId == first.WorkerId).ActiveBlocks;
        Assert.Equal(Blocks, Active());
        first.MarkFirstToken(); // its prompt no longer saturates its worker's prefill budget

        // The same prompt in flight: held through its last block, so matched whole and no new load.
        RoutingDecision same = Route(router, prompt);
        Assert.Equal(first.WorkerId, same.WorkerId);
        Assert.Equal(Blocks, same.OverlapBlocks);
        Assert.Equal(Blocks, Active());
        same.MarkFirstToken();

        // A prompt sharing the first 2,500 blocks: matched up to the last tracked block it shares (block 2,495; past block
        // 1,023 one in 64 is tracked), never beyond the shared prefix; its 500 new blocks count as load, give or take a step.
        int[] branch = [.. prompt.Take(2500 * BlockSize), .. Prompt(6, 500 * BlockSize)];
        RoutingDecision third = Route(router, branch);
        Assert.Equal(first.WorkerId, third.WorkerId);
        Assert.Equal(2496, third.OverlapBlocks);
        Assert.InRange(Active(), Blocks + 500, Blocks + 500 + 64);

        first.Complete();
        same.Complete();
        third.Complete();
        Assert.All(router.GetStats().Workers, w => Assert.Equal(0, w.ActiveBlocks));
    }

    [Fact]
    public async Task RouteAsync_AllowedWorkers_OnlyThoseCandidatesAndRefusedWhenNoneKnown()
    {
        KvRouter router = Create(4);
        int[] prompt = Prompt(1, 1000);
        Cache(router, 3, prompt);
        for (int i = 0; i < 10; i++)
        {
            using RoutingDecision d = Route(router, prompt, new RouteOverrides { AllowedWorkers = new HashSet<long> { 1, 2 } });
            Assert.Contains(d.WorkerId, new long[] { 1, 2 });
            Assert.Equal(0, d.OverlapBlocks);
        }

        var e = await Assert.ThrowsAsync<RouterRejectedException>(() => router.RouteAsync(prompt, new RouteOverrides { AllowedWorkers = new HashSet<long> { 99 } }).AsTask());
        Assert.Equal(RouterRejection.NoWorker, e.Reason);
        Assert.Contains("no worker", e.Message);
    }

    [Fact]
    public void RouteAsync_CachedWorkerOverloaded_GoesElsewhere()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { Saturation = 100 });
        var held = new List<RoutingDecision>();
        for (int i = 0; i < 20; i++)
        {
            held.Add(Route(router, Prompt(100 + i, 2000)));
        }

        int[] prompt = Prompt(1, 512);
        Cache(router, 1, prompt);
        router.AddWorker(2);

        using RoutingDecision d = Route(router, prompt);

        Assert.Equal(2, d.WorkerId);
        Assert.Equal(0, d.OverlapBlocks);
        held.ForEach(h => h.Dispose());
        using RoutingDecision after = Route(router, prompt);
        Assert.Equal(1, after.WorkerId);
    }

    private static int[] WithSuffix(int[] prefix, int seed, int tokens) => [.. prefix, .. Prompt(seed, tokens).Select(t => t + 1_000_000)];

    [Fact]
    public void RouteAsync_HotPrefixHolderQueueLong_SpreadsToSecondWorker()
    {
        KvRouter router = Create(2);
        int[] prefix = Prompt(1, 1024);
        Cache(router, 1, prefix);
        var held = new List<RoutingDecision>();

        // Each request recomputes only its 256-token suffix on the holder; recomputing the whole prompt
        // elsewhere costs 1280 tokens. It stays while the holder's queued prefill is below the prefix.
        for (int i = 0; i < 4; i++)
        {
            held.Add(Route(router, WithSuffix(prefix, 100 + i, 256)));
            Assert.Equal(1, held[^1].WorkerId);
            Assert.Equal(1024 / BlockSize, held[^1].OverlapBlocks);
        }

        Assert.Equal(1024, router.GetStats().Workers.Single(w => w.WorkerId == 1).ActivePrefillTokens);
        RoutingDecision spread = Route(router, WithSuffix(prefix, 200, 256));
        held.Add(spread);
        Assert.Equal(2, spread.WorkerId);
        Assert.Equal(0, spread.OverlapBlocks);

        // Now both hold the prefix (worker 2's in flight): the group's requests use both.
        var chosen = new HashSet<long>();
        for (int i = 0; i < 8; i++)
        {
            held.Add(Route(router, WithSuffix(prefix, 300 + i, 256)));
            chosen.Add(held[^1].WorkerId);
            Assert.Equal(1024 / BlockSize, held[^1].OverlapBlocks);
        }

        Assert.Equal([1L, 2L], chosen.Order());
        held.ForEach(h => h.Dispose());
    }

    [Fact]
    public void RouteAsync_HolderOnlyDecoding_KeepsThePrefix()
    {
        KvRouter router = Create(2);
        int[] prefix = Prompt(1, 1024);
        Cache(router, 1, prefix);
        var decoding = new List<RoutingDecision>();
        for (int i = 0; i < 3; i++)
        {
            RoutingDecision d = Route(router, Prompt(50 + i, 1024), new RouteOverrides { AllowedWorkers = new HashSet<long> { 1 } });
            d.MarkFirstToken();
            decoding.Add(d);
        }

        // 192 blocks of decoding KV on the holder, nothing queued: recomputing the prefix elsewhere would
        // only delay the first token.
        using RoutingDecision next = Route(router, WithSuffix(prefix, 60, 256));

        Assert.Equal(1, next.WorkerId);
        decoding.ForEach(d => d.Dispose());
    }

    [Fact]
    public void RouteAsync_NewPrefixOnFullCache_GoesWhereItEvictsNothing()
    {
        foreach (bool reported in new[] { false, true })
        {
            KvRouter router = Create(2);
            if (reported)
            {
                router.UpdateLoad(new WorkerLoad { WorkerId = 1, KvBlocksTotal = 128 });
                router.UpdateLoad(new WorkerLoad { WorkerId = 2, KvBlocksTotal = 128 });
            }

            int[] cached = Prompt(1, 120 * BlockSize);
            Cache(router, 1, cached);

            // Shares only its first block with worker 1's 120 cached blocks: its 40 new blocks would push 32
            // of them out of worker 1's 128-block pool, and nothing out of worker 2's.
            using RoutingDecision d = Route(router, [.. cached.Take(BlockSize), .. Prompt(2, 40 * BlockSize)]);

            Assert.Equal(reported ? 2 : 1, d.WorkerId);
        }
    }

    [Fact]
    public void UpdateLoad_ReportedBlocks_SteerAwayUntilStale()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(2, time: time);
        router.UpdateLoad(new WorkerLoad { WorkerId = 1, KvBlocksUsed = 5000 });

        for (int i = 0; i < 20; i++)
        {
            using RoutingDecision d = Route(router, Prompt(i, 100));
            Assert.Equal(2, d.WorkerId);
        }

        time.Advance(KvRouterOptions.Default.StaleMetricsDecay);
        var chosen = new HashSet<long>();
        for (int i = 0; i < 40; i++)
        {
            using RoutingDecision d = Route(router, Prompt(i, 100));
            chosen.Add(d.WorkerId);
        }

        Assert.Equal([1L, 2L], chosen.Order());
    }

    [Fact]
    public void RouteAsync_Ties_RandomButSeeded()
    {
        static long[] Run(int seed)
        {
            KvRouter router = Create(4, KvRouterOptions.Default with { Seed = seed });
            var picks = new long[200];
            for (int i = 0; i < picks.Length; i++)
            {
                using RoutingDecision d = Route(router, Prompt(i, 64));
                picks[i] = d.WorkerId;
            }

            return picks;
        }

        long[] a = Run(1);
        Assert.Equal(a, Run(1));
        Assert.NotEqual(a, Run(2));
        foreach (long w in new long[] { 1, 2, 3, 4 })
        {
            Assert.InRange(a.Count(p => p == w), 25, 75);
        }
    }

    [Fact]
    public void RouteAsync_Temperature_SamplesBySoftmaxOfNormalisedCosts()
    {
        KvRouter router = Create(2, KvRouterOptions.Default with { Temperature = 1, Seed = 3 });
        int[] prompt = Prompt(9, 640);
        Cache(router, 1, prompt);

        int first = 0;
        const int n = 4000;
        for (int i = 0; i < n; i++)
        {
            using RoutingDecision d = Route(router, prompt);
            first += d.WorkerId == 1 ? 1 : 0;
        }

        // Normalised costs 0 and 1: weights 1 and e^-1.
        double expected = 1 / (1 + Math.Exp(-1));
        Assert.InRange(first / (double)n, expected - 0.03, expected + 0.03);

        int greedy = 0;
        for (int i = 0; i < 200; i++)
        {
            using RoutingDecision d = Route(router, prompt, new RouteOverrides { Temperature = 0 });
            greedy += d.WorkerId == 1 ? 1 : 0;
        }

        Assert.Equal(200, greedy);
    }

    [Fact]
    public void RouteAsync_WeightOverride_ZeroIgnoresCache()
    {
        KvRouter router = Create(2);
        int[] prompt = Prompt(4, 320);
        Cache(router, 1, prompt);
        using RoutingDecision busy = Route(router, Prompt(5, 48), new RouteOverrides { OverlapScoreWeight = 0 });
        long busyWorker = busy.WorkerId;

        using RoutingDecision d = Route(router, prompt, new RouteOverrides { OverlapScoreWeight = 0 });

        Assert.NotEqual(busyWorker, d.WorkerId);
    }

    [Fact]
    public async Task RouteAsync_AllSaturated_QueuesInOrderThenRejects()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { DefaultBatchBudget = 100, MaxQueue = 2, RetryAfter = TimeSpan.FromSeconds(3) });
        RoutingDecision first = Route(router, Prompt(1, 200));

        ValueTask<RoutingDecision> second = router.RouteAsync(Prompt(2, 200));
        ValueTask<RoutingDecision> third = router.RouteAsync(Prompt(3, 200));
        ValueTask<RoutingDecision> fourth = router.RouteAsync(Prompt(4, 200));

        Assert.False(second.IsCompleted);
        Assert.False(third.IsCompleted);
        RouterRejectedException e = await Assert.ThrowsAsync<RouterRejectedException>(async () => await fourth);
        Assert.Equal(RouterRejection.QueueFull, e.Reason);
        Assert.Equal(TimeSpan.FromSeconds(3), e.RetryAfter);
        RouterStats stats = router.GetStats();
        Assert.Equal(2, stats.QueueDepth);
        Assert.Equal(1, stats.Rejections);
        Assert.Equal(2, stats.Queued);

        first.MarkFirstToken();
        RoutingDecision secondDecision = await second;
        Assert.False(third.IsCompleted);
        Assert.Equal(1, router.GetStats().QueueDepth);

        secondDecision.Complete();
        RoutingDecision thirdDecision = await third;
        Assert.Equal(200, thirdDecision.PromptTokens);
        Assert.Equal(0, router.GetStats().QueueDepth);
        first.Dispose();
        thirdDecision.Dispose();
        Assert.Equal(0, router.GetStats().InFlight);
    }

    [Fact]
    public async Task RouteAsync_CancelledWhileQueued_LeavesQueue()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { DefaultBatchBudget = 100 });
        using RoutingDecision first = Route(router, Prompt(1, 200));
        using var cancel = new CancellationTokenSource();
        ValueTask<RoutingDecision> waiting = router.RouteAsync(Prompt(2, 200), cancellationToken: cancel.Token);
        Assert.Equal(1, router.GetStats().QueueDepth);

        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await waiting);
        Assert.Equal(0, router.GetStats().QueueDepth);
    }

    [Fact]
    public async Task RouteAsync_QueuedPastTheQueueTimeout_RejectedWithQueueTimeout()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(1, KvRouterOptions.Default with { DefaultBatchBudget = 100, QueueTimeout = TimeSpan.FromSeconds(5), RetryAfter = TimeSpan.FromSeconds(2) }, time);
        using RoutingDecision first = Route(router, Prompt(1, 200));
        ValueTask<RoutingDecision> waiting = router.RouteAsync(Prompt(2, 200));

        time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.False(waiting.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(0.1));

        RouterRejectedException e = await Assert.ThrowsAsync<RouterRejectedException>(async () => await waiting);
        Assert.Equal(RouterRejection.QueueTimeout, e.Reason);
        Assert.Equal(TimeSpan.FromSeconds(2), e.RetryAfter);
        Assert.Contains("--router-queue-timeout", e.Message, StringComparison.Ordinal);
        RouterStats stats = router.GetStats();
        Assert.Equal(0, stats.QueueDepth);
        Assert.Equal(1, stats.Rejections);
    }

    [Fact]
    public async Task RouteAsync_LeftTheQueueInTime_ItsTimeoutNeverFires()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(1, KvRouterOptions.Default with { DefaultBatchBudget = 100, QueueTimeout = TimeSpan.FromSeconds(5) }, time);
        RoutingDecision first = Route(router, Prompt(1, 200));
        ValueTask<RoutingDecision> waiting = router.RouteAsync(Prompt(2, 200));
        time.Advance(TimeSpan.FromSeconds(4));

        first.Complete(0);
        using RoutingDecision second = await waiting;
        time.Advance(TimeSpan.FromSeconds(10));

        Assert.False(second.IsCompleted);
        Assert.Equal(0, router.GetStats().Rejections);
        Assert.Equal(1, router.GetStats().InFlight);
    }

    [Fact]
    public async Task RemoveWorker_LastWithQueue_FailsQueuedRequests()
    {
        KvRouter router = Create(1, KvRouterOptions.Default with { DefaultBatchBudget = 100 });
        RoutingDecision first = Route(router, Prompt(1, 200));
        ValueTask<RoutingDecision> waiting = router.RouteAsync(Prompt(2, 200));

        Assert.True(router.RemoveWorker(1));

        Assert.Equal(RouterRejection.NoWorker, (await Assert.ThrowsAsync<RouterRejectedException>(async () => await waiting)).Reason);
        first.Complete(100);
        Assert.True(first.IsCompleted);
        Assert.Empty(router.GetStats().Workers);
        Assert.Equal(RouterRejection.NoWorker, (await Assert.ThrowsAsync<RouterRejectedException>(async () => await router.RouteAsync(Prompt(3, 10)))).Reason);
    }

    [Fact]
    public void Complete_CancelledStream_ReleasesAllLoad()
    {
        KvRouter router = Create(2);
        RoutingDecision a = Route(router, Prompt(1, 1000));
        RoutingDecision b = Route(router, Prompt(1, 1000));
        RouterStats busy = router.GetStats();
        Assert.Equal(2, busy.InFlight);
        Assert.True(busy.Workers.Sum(w => w.ActivePrefillTokens) > 0);
        Assert.True(busy.Workers.Sum(w => w.ActiveBlocks) > 0);

        a.MarkFirstToken();
        a.Complete();
        b.Dispose();
        b.Dispose();

        RouterStats idle = router.GetStats();
        Assert.Equal(0, idle.InFlight);
        Assert.All(idle.Workers, w =>
        {
            Assert.Equal(0, w.ActivePrefillTokens);
            Assert.Equal(0, w.ActiveBlocks);
            Assert.Equal(0, w.InFlight);
        });
    }

    [Fact]
    public void RouteAsync_InflightPrefix_CountsAsSoonCached()
    {
        foreach (bool count in new[] { true, false })
        {
            KvRouter router = Create(4, KvRouterOptions.Default with { CountInflightPrefixes = count });
            int[] prompt = Prompt(8, 1000);
            RoutingDecision first = Route(router, prompt);
            first.MarkFirstToken();

            using RoutingDecision second = Route(router, prompt);

            Assert.Equal(count, second.WorkerId == first.WorkerId);
            Assert.Equal(count ? 1000 / BlockSize : 0, second.OverlapBlocks);
            Assert.Equal(0, second.IndexedOverlapBlocks);
            first.Dispose();
        }
    }

    [Fact]
    public void RouteAsync_JustCompletedPrefix_CountsWithinTheRecentWindowOnly()
    {
        var time = new ManualTimeProvider();
        KvRouter router = Create(4, time: time);
        int[] prompt = Prompt(8, 1000);
        RoutingDecision first = Route(router, prompt);
        first.MarkFirstToken();
        first.Complete(0); // finished; its KV events have not reached the index

        RoutingDecision second = Route(router, prompt);
        Assert.Equal(first.WorkerId, second.WorkerId);
        Assert.Equal(1000 / BlockSize, second.OverlapBlocks);
        Assert.Equal(0, second.IndexedOverlapBlocks);
        second.Dispose(); // cancelled: not a completed prefix

        time.Advance(KvRouterOptions.Default.RecentPrefixWindow);
        using RoutingDecision third = Route(router, prompt);
        Assert.Equal(0, third.OverlapBlocks);

        KvRouter off = Create(4, KvRouterOptions.Default with { RecentPrefixWindow = TimeSpan.Zero }, time);
        RoutingDecision a = Route(off, prompt);
        a.Complete(0);
        using RoutingDecision b = Route(off, prompt);
        Assert.Equal(0, b.OverlapBlocks);
    }

    [Fact]
    public void RemoveWorker_WithRecentPrefixes_OthersSeeNothingOfIt()
    {
        KvRouter router = Create(2);
        int[] prompt = Prompt(9, 1000);
        RoutingDecision first = Route(router, prompt);
        first.Complete(0);
        Assert.True(router.RemoveWorker(first.WorkerId));
        router.AddWorker(first.WorkerId + 10);

        using RoutingDecision next = Route(router, prompt);
        Assert.Equal(0, next.OverlapBlocks);
    }

    // After warm-up a decision allocates its RoutingDecision (the lease the caller holds) and nothing per
    // block or per worker: hashes come from the pool, the tables and scratch arrays are reused.
    [Fact]
    public void RouteAsync_WarmedUp_AllocatesOnlyTheDecision()
    {
        KvRouter router = Create(64);
        int[][] prompts = [.. Enumerable.Range(0, 8).Select(p => Prompt(p, 1000 + p))];
        for (int w = 1; w <= 64; w++)
        {
            Cache(router, w, prompts[w % 8]);
        }

        var inFlight = new RoutingDecision?[16];
        void Step(int i)
        {
            ValueTask<RoutingDecision> task = router.RouteAsync(prompts[i % prompts.Length]);
            RoutingDecision decision = task.Result;
            decision.MarkFirstToken();
            inFlight[i % inFlight.Length]?.Complete();
            inFlight[i % inFlight.Length] = decision;
        }

        for (int i = 0; i < 2000; i++)
        {
            Step(i);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            Step(i);
        }

        long perDecision = (GC.GetAllocatedBytesForCurrentThread() - before) / 1000;
        Assert.InRange(perDecision, 1, 128);
        foreach (RoutingDecision? d in inFlight)
        {
            d?.Complete();
        }

        Assert.All(router.GetStats().Workers, w => Assert.Equal(0, w.ActiveBlocks));
    }

    [Fact]
    public void GetStats_CompletedWithActual_CountsAccuracy()
    {
        KvRouter router = Create(1);
        int[] prompt = Prompt(2, 100);
        Cache(router, 1, prompt);
        Route(router, prompt).Complete(80);
        Route(router, Prompt(3, 50)).Complete();

        RouterStats stats = router.GetStats();

        Assert.Equal(2, stats.Decisions);
        Assert.Equal(150, stats.PromptTokens);
        Assert.Equal(96, stats.PredictedHitTokens);
        Assert.Equal(1, stats.ReportedDecisions);
        Assert.Equal(96, stats.ReportedPredictedHitTokens);
        Assert.Equal(80, stats.ReportedActualHitTokens);
    }

    [Fact]
    public void ApplyEvent_UnknownWorker_Ignored()
    {
        KvRouter router = Create(1);
        Assert.Equal(KvApplyResult.Stale, router.ApplyEvent(new KvEvent(9, 1, KvClearedData.Instance)));
        Assert.DoesNotContain(9L, router.Index.Workers);
    }

    [Theory]
    [InlineData("--kv-overlap-score-weight")]
    [InlineData("--router-temperature")]
    [InlineData("--router-max-queue")]
    [InlineData("--router-saturation")]
    [InlineData("--router-batch-budget")]
    [InlineData("--router-metrics-decay")]
    [InlineData("--block-size")]
    [InlineData("--router-replica-heartbeat")]
    [InlineData("--router-peer-charge-ttl")]
    public void Validate_OutOfRange_NamesFlag(string flag)
    {
        KvRouterOptions bad = flag switch
        {
            "--kv-overlap-score-weight" => KvRouterOptions.Default with { OverlapScoreWeight = double.NaN },
            "--router-temperature" => KvRouterOptions.Default with { Temperature = -1 },
            "--router-max-queue" => KvRouterOptions.Default with { MaxQueue = -1 },
            "--router-saturation" => KvRouterOptions.Default with { Saturation = 0 },
            "--router-batch-budget" => KvRouterOptions.Default with { DefaultBatchBudget = 0 },
            "--router-metrics-decay" => KvRouterOptions.Default with { StaleMetricsDecay = TimeSpan.Zero },
            "--router-replica-heartbeat" => KvRouterOptions.Default with { ReplicaHeartbeat = TimeSpan.Zero },
            "--router-peer-charge-ttl" => KvRouterOptions.Default with { ReplicaHeartbeat = TimeSpan.FromSeconds(10), PeerChargeTtl = TimeSpan.FromSeconds(15) },
            _ => KvRouterOptions.Default with { BlockSize = 0 },
        };

        ArgumentException e = Assert.Throws<ArgumentException>(() => bad.Validate());
        Assert.Contains(flag, e.Message, StringComparison.Ordinal);
    }
}

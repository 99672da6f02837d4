using System.Text;
using System.Text.Json;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Llm.Routing;

/// <summary>Router replicas sharing their charges (Routing/README.md, "Router replicas"), wired to each other directly.</summary>
public sealed class KvRouterReplicaTests
{
    private const int BlockSize = 16;

    private const string ChargedJson =
        """{"router_id":7,"decision_id":3,"kind":"charged","worker_id":12,"dp_rank":1,"prompt_tokens":40,"prefill_tokens":24,"block_hashes":[1,18446744073709551615]}""";

    private const string FirstTokenJson = """{"router_id":7,"decision_id":3,"kind":"first_token","worker_id":12}""";

    private const string ReleasedJson = """{"router_id":7,"decision_id":3,"kind":"released","worker_id":12,"completed":true}""";

    private const string ReleasedWithOutcomeJson =
        """{"router_id":7,"decision_id":3,"kind":"released","worker_id":12,"completed":true,"cached_tokens":32,"output_tokens":160}""";

    private const string LiveJson = """{"router_id":7,"decision_id":9,"kind":"live","worker_id":0,"live_count":2,"live_digest":18446744073709551615,"heartbeat":4}""";

    public static TheoryData<string, RouterChargeEvent> Goldens => new()
    {
        { ChargedJson, new RouterChargeEvent { RouterId = 7, DecisionId = 3, Kind = RouterChargeKind.Charged, WorkerId = 12, DpRank = 1, PromptTokens = 40, PrefillTokens = 24, BlockHashes = [1, ulong.MaxValue] } },
        { FirstTokenJson, new RouterChargeEvent { RouterId = 7, DecisionId = 3, Kind = RouterChargeKind.FirstToken, WorkerId = 12 } },
        { ReleasedJson, new RouterChargeEvent { RouterId = 7, DecisionId = 3, Kind = RouterChargeKind.Released, WorkerId = 12, Completed = true } },
        { ReleasedWithOutcomeJson, new RouterChargeEvent { RouterId = 7, DecisionId = 3, Kind = RouterChargeKind.Released, WorkerId = 12, Completed = true, CachedTokens = 32, OutputTokens = 160 } },
        { LiveJson, new RouterChargeEvent { RouterId = 7, DecisionId = 9, Kind = RouterChargeKind.Live, LiveCount = 2, LiveDigest = ulong.MaxValue, Heartbeat = 4 } },
    };

    private static int[] Prompt(int seed, int tokens) => [.. Enumerable.Range(0, tokens).Select(i => (seed * 7919) + i)];

    private static KvRouter Create(int workers, int seed, TimeProvider? time = null)
    {
        var router = new KvRouter(KvRouterOptions.Default with { BlockSize = BlockSize, Seed = seed }, time);
        for (int w = 1; w <= workers; w++)
        {
            router.AddWorker(w);
        }

        return router;
    }

    /// <summary>Two replicas, each applying the other's charges at once (through their JSON, as on the wire).</summary>
    private static (KvRouter A, KvRouter B) Pair(int workers, TimeProvider? time = null)
    {
        KvRouter a = Create(workers, 1, time), b = Create(workers, 2, time);
        a.ObserveCharges(101, e => b.ApplyPeerCharge(RouterChargeEvent.Parse(e.ToUtf8Json())));
        b.ObserveCharges(102, e => a.ApplyPeerCharge(RouterChargeEvent.Parse(e.ToUtf8Json())));
        return (a, b);
    }

    private static RoutingDecision Route(KvRouter router, int[] tokens)
    {
        ValueTask<RoutingDecision> task = router.RouteAsync(tokens);
        Assert.True(task.IsCompletedSuccessfully);
        return task.AsTask().Result;
    }

    private static IEnumerable<(long Worker, int InFlight, long Prefill, long Blocks)> View(KvRouter router) =>
        router.GetStats().Workers.Select(w => (w.WorkerId, w.InFlight, w.ActivePrefillTokens, w.ActiveBlocks));

    [Theory]
    [MemberData(nameof(Goldens))]
    public void ToUtf8Json_EachKind_MatchesGoldenAndParsesBack(string json, RouterChargeEvent charge)
    {
        Assert.Equal(json, Encoding.UTF8.GetString(charge.ToUtf8Json()));
        RouterChargeEvent parsed = RouterChargeEvent.Parse(Encoding.UTF8.GetBytes(json));
        Assert.Equal(charge with { BlockHashes = null }, parsed with { BlockHashes = null });
        Assert.Equal(charge.BlockHashes, parsed.BlockHashes);
    }

    [Fact]
    public void Parse_MalformedOrUnknownKind_ThrowsJsonException()
    {
        Assert.ThrowsAny<JsonException>(() => RouterChargeEvent.Parse("""{"router_id":7,"kind":"borrowed"}"""u8));
        Assert.ThrowsAny<JsonException>(() => RouterChargeEvent.Parse("null"u8));
    }

    [Fact]
    public void RouteAsync_SharedPrefixThroughBothReplicas_LandsOnTheSameWorker()
    {
        (KvRouter a, KvRouter b) = Pair(8);
        int[] prompt = Prompt(3, 1000);
        var held = new List<RoutingDecision>();
        for (int i = 0; i < 10; i++)
        {
            RoutingDecision d = Route(i % 2 == 0 ? a : b, prompt);
            d.MarkFirstToken();
            held.Add(d);
        }

        Assert.Single(held.Select(d => d.WorkerId).Distinct());
        Assert.All(held.Skip(1), d => Assert.Equal(1000 / BlockSize, d.OverlapBlocks));
        held.ForEach(d => d.Dispose());
    }

    [Fact]
    public void RouteAsync_ConcurrentDistinctPromptsThroughBothReplicas_OnePerWorkerAndBothViewsAgree()
    {
        (KvRouter a, KvRouter b) = Pair(6);
        RoutingDecision[] held = [.. Enumerable.Range(0, 6).Select(i => Route(i % 2 == 0 ? a : b, Prompt(10 + i, 512)))];

        Assert.Equal(6, held.Select(d => d.WorkerId).Distinct().Count());
        Assert.Equal(View(a), View(b));
        Assert.Equal(6, a.GetStats().InFlight);
        Assert.Equal(3, a.GetStats().PeerCharges);

        held[0].MarkFirstToken();
        held[1].Complete(0);
        Assert.Equal(View(a), View(b));
        foreach (RoutingDecision d in held)
        {
            d.Dispose();
        }

        Assert.Equal(View(a), View(b));
        Assert.All(a.GetStats().Workers, w => Assert.Equal((0, 0L, 0L), (w.InFlight, w.ActivePrefillTokens, w.ActiveBlocks)));
        Assert.Equal(0, b.GetStats().PeerCharges);
    }

    [Fact]
    public void ApplyPeerCharge_CompletedRelease_PrefixCountsAtThePeerWithinTheRecentWindow()
    {
        (KvRouter a, KvRouter b) = Pair(4);
        int[] prompt = Prompt(5, 800);
        RoutingDecision first = Route(a, prompt);
        first.Complete(0);

        using RoutingDecision second = Route(b, prompt);

        Assert.Equal(first.WorkerId, second.WorkerId);
        Assert.Equal(800 / BlockSize, second.OverlapBlocks);
        Assert.Equal(0, second.IndexedOverlapBlocks);
    }

    private static void ReportPool(KvRouter router, int freeBlocks) =>
        router.UpdateLoad(new WorkerLoad { WorkerId = 1, KvBlocksTotal = freeBlocks, KvBlocksUsed = 0 });

    private static double RetentionSeconds(KvRouter router) => Assert.Single(router.GetStats().Workers).PrefixRetention.TotalSeconds;

    [Fact]
    public void ApplyPeerCharge_ReleaseWithCachedAndOutputTokens_CorrectsThePeersEvictionEstimateAsTheDecidersOwn()
    {
        var time = new ManualTimeProvider();
        (KvRouter a, KvRouter b) = Pair(1, time);
        ReportPool(a, 100);
        ReportPool(b, 100);
        int[] prompt = Prompt(4, 64);
        RoutingDecision first = Route(a, prompt); // 4 new blocks charged
        RoutingDecision second = Route(a, prompt); // its 4 blocks predicted in flight: none charged
        Assert.Equal(4, second.OverlapBlocks);

        first.Complete(0, 160); // as charged, and 10 output blocks
        second.Complete(16, null); // 1 of the 4 predicted blocks found: 3 more new blocks than charged
        time.Advance(TimeSpan.FromSeconds(10));
        ReportPool(a, 100);
        ReportPool(b, 100);

        Assert.Equal(100 / 1.7, RetentionSeconds(a), 1e-6); // 17 new blocks in 10 s
        Assert.Equal(RetentionSeconds(a), RetentionSeconds(b), 1e-9);
        Assert.Equal(0, b.GetStats().ReportedDecisions); // the accuracy check and its counts stay with the deciding replica
    }

    [Fact]
    public void ApplyPeerCharge_ReleaseWithoutOutcomeOrOfAResyncedCharge_LeavesThePeersEstimateUncorrected()
    {
        var time = new ManualTimeProvider();
        KvRouter b = Create(1, 2, time);
        ReportPool(b, 100);
        var charged = new RouterChargeEvent { RouterId = 9, DecisionId = 1, Kind = RouterChargeKind.Charged, WorkerId = 1, PromptTokens = 64, PrefillTokens = 64, BlockHashes = [1, 2, 3, 4] };
        Assert.True(b.ApplyPeerCharge(charged));
        Assert.True(b.ApplyPeerCharge(charged with { Kind = RouterChargeKind.Released, Completed = true, BlockHashes = null })); // an older replica's
        time.Advance(TimeSpan.FromSeconds(10));
        ReportPool(b, 100);
        Assert.Equal(250, RetentionSeconds(b), 1e-6); // the 4 charged blocks in 10 s, as charged

        KvRouter a = Create(1, 1, time), c = Create(1, 3, time);
        ReportPool(c, 100);
        a.ObserveCharges(101, _ => { });
        RoutingDecision held = Route(a, Prompt(5, 64));
        Resync(c, a, 101); // learnt by the resync: its blocks were sent before, not counted now, nor corrected
        Assert.Equal(1, c.GetStats().PeerCharges);
        a.ObserveCharges(101, e => c.ApplyPeerCharge(RouterChargeEvent.Parse(e.ToUtf8Json())));
        held.Complete(0, 1600);
        Assert.Equal(0, c.GetStats().PeerCharges);
        time.Advance(TimeSpan.FromSeconds(10));
        ReportPool(c, 100);
        Assert.Equal(PoolRetention.MaxRetention.TotalSeconds, RetentionSeconds(c)); // no new block sent it in 10 s
    }

    [Fact]
    public void ApplyPeerCharge_OwnRepeatedUnknownWorkerOrUnseenDecision_Ignored()
    {
        KvRouter router = Create(2, 1);
        router.ObserveCharges(5, _ => { });
        var charged = new RouterChargeEvent { RouterId = 9, DecisionId = 1, Kind = RouterChargeKind.Charged, WorkerId = 1, PromptTokens = 40, PrefillTokens = 40, BlockHashes = [11, 12] };

        Assert.False(router.ApplyPeerCharge(charged with { RouterId = 5 }));
        Assert.False(router.ApplyPeerCharge(charged with { DecisionId = 3, WorkerId = 99 }));
        Assert.False(router.ApplyPeerCharge(charged with { DecisionId = 2, Kind = RouterChargeKind.Released }));
        Assert.True(router.ApplyPeerCharge(charged));
        Assert.False(router.ApplyPeerCharge(charged));
        Assert.Equal((1, 40L, 3L), router.GetStats().Workers.Where(w => w.WorkerId == 1).Select(w => (w.InFlight, w.ActivePrefillTokens, w.ActiveBlocks)).Single());
        Assert.True(router.ApplyPeerCharge(charged with { Kind = RouterChargeKind.FirstToken, BlockHashes = null }));
        Assert.False(router.ApplyPeerCharge(charged with { Kind = RouterChargeKind.FirstToken, BlockHashes = null }));
        Assert.Equal(0, router.GetStats().Workers.Single(w => w.WorkerId == 1).ActivePrefillTokens);
        Assert.True(router.ApplyPeerCharge(charged with { Kind = RouterChargeKind.Released, BlockHashes = null }));
        Assert.Equal(0, router.GetStats().InFlight);
        Assert.Equal(0, router.GetStats().PeerCharges);
    }

    [Fact]
    public void ForgetPeer_ReplicaLeft_ReleasesEveryChargeOfItOnly()
    {
        KvRouter router = Create(2, 1);
        for (int i = 1; i <= 3; i++)
        {
            Assert.True(router.ApplyPeerCharge(new RouterChargeEvent { RouterId = i == 3 ? 8 : 9, DecisionId = i, Kind = RouterChargeKind.Charged, WorkerId = 1 + (i % 2), PromptTokens = 32, PrefillTokens = 32, BlockHashes = [(ulong)i, 100] }));
        }

        Assert.Equal([8L, 9L], router.Peers);
        Assert.Equal(2, router.ForgetPeer(9));
        Assert.Equal(0, router.ForgetPeer(9));
        Assert.Equal([8L], router.Peers);
        Assert.Equal(1, router.GetStats().InFlight);
        Assert.Equal(1, router.GetStats().PeerCharges);
    }

    [Fact]
    public void ObserveCharges_OwnDecisions_ChargedFirstTokenReleasedInOrderWithIncreasingIds()
    {
        KvRouter router = Create(2, 1);
        var seen = new List<RouterChargeEvent>();
        router.ObserveCharges(5, seen.Add);
        RoutingDecision d1 = Route(router, Prompt(1, 40));
        RoutingDecision d2 = Route(router, Prompt(2, 32));
        d1.MarkFirstToken();
        d1.Complete(16);
        d2.Dispose();
        d2.Dispose();

        Assert.Equal(
            [(1L, RouterChargeKind.Charged), (2, RouterChargeKind.Charged), (1, RouterChargeKind.FirstToken), (1, RouterChargeKind.Released), (2, RouterChargeKind.Released)],
            seen.Select(e => (e.DecisionId, e.Kind)));
        Assert.All(seen, e => Assert.Equal(5, e.RouterId));
        Assert.Equal((40, 40L, 2), (seen[0].PromptTokens, seen[0].PrefillTokens, seen[0].BlockHashes!.Count));
        Assert.True(seen[3].Completed);
        Assert.False(seen[4].Completed);
    }

    [Fact]
    public void Heartbeat_ReleaseLostOnTheWay_PeerOutOfStepAndItsResyncReleasesTheCharge()
    {
        KvRouter a = Create(4, 1), b = Create(4, 2);
        bool lose = false;
        a.ObserveCharges(101, e =>
        {
            if (!(lose && e.Kind == RouterChargeKind.Released))
            {
                b.ApplyPeerCharge(RouterChargeEvent.Parse(e.ToUtf8Json()));
            }
        });
        var outOfStep = new List<long>();
        b.PeerOutOfStep += outOfStep.Add;
        RoutingDecision kept = Route(a, Prompt(1, 100));
        RoutingDecision lost = Route(a, Prompt(2, 100));
        a.Heartbeat();
        Assert.Empty(outOfStep);

        lose = true;
        lost.Dispose();
        Assert.Equal(2, b.GetStats().PeerCharges);
        a.Heartbeat();
        Assert.Equal([101L], outOfStep);

        Resync(b, a, 101);
        Assert.Equal(View(a), View(b));
        Assert.Equal((1, 1L), (b.GetStats().PeerCharges, b.GetStats().PeerChargesDropped));
        a.Heartbeat();
        Assert.Single(outOfStep);
        lose = false;
        kept.Dispose();
        Assert.Equal(0, b.GetStats().InFlight);
    }

    [Fact]
    public void EndPeerSync_ChargesMadeBeforeTheReplicaListened_ChargedAndThoseEndedMeanwhileNotBroughtBack()
    {
        KvRouter a = Create(4, 1), b = Create(4, 2);
        var pending = new List<RouterChargeEvent>();
        a.ObserveCharges(101, pending.Add);
        RoutingDecision[] before = [.. Enumerable.Range(0, 4).Select(i => Route(a, Prompt(20 + i, 200)))];
        pending.Clear(); // b was not listening yet

        Assert.True(b.BeginPeerSync(101));
        Assert.False(b.BeginPeerSync(101));
        (long heartbeat, long last, long[] ids) = a.LiveDecisions();
        IReadOnlyList<long> missing = b.ReconcilePeer(101, heartbeat, last, ids);
        Assert.Equal([1L, 2, 3, 4], missing);
        IReadOnlyList<RouterChargeEvent> answer = a.LiveCharges(missing);

        // While the answer travels: one ends, one gets its first token, a new one is charged; b hears those events first.
        before[0].Dispose();
        before[1].MarkFirstToken();
        RoutingDecision after = Route(a, Prompt(30, 200));
        foreach (RouterChargeEvent e in pending)
        {
            b.ApplyPeerCharge(RouterChargeEvent.Parse(e.ToUtf8Json()));
        }

        Assert.Equal(3, b.EndPeerSync(101, answer));
        Assert.Equal(View(a), View(b));
        Assert.Equal(4, b.GetStats().PeerCharges);

        pending.Clear();
        foreach (RoutingDecision d in before.Skip(1).Append(after))
        {
            d.Dispose();
        }

        foreach (RouterChargeEvent e in pending)
        {
            b.ApplyPeerCharge(e);
        }

        Assert.Equal((0, 0), (b.GetStats().InFlight, b.GetStats().PeerCharges));
    }

    [Fact]
    public void Heartbeat_PeerChargeUnconfirmedForTheTtl_ReleasedAndOneItsReplicaStillAnnouncesKept()
    {
        var time = new ManualTimeProvider();
        var router = new KvRouter(KvRouterOptions.Default with { BlockSize = BlockSize, Seed = 1, ReplicaHeartbeat = TimeSpan.FromSeconds(1), PeerChargeTtl = TimeSpan.FromSeconds(10) }, time);
        router.AddWorker(1);
        router.AddWorker(2);
        RouterChargeEvent Charged(long replica, int worker) => new() { RouterId = replica, DecisionId = 1, Kind = RouterChargeKind.Charged, WorkerId = worker, PromptTokens = 32, PrefillTokens = 32, BlockHashes = [(ulong)worker, 7] };
        Assert.True(router.ApplyPeerCharge(Charged(9, 1))); // its replica never sends a heartbeat (an older one), or they are lost
        Assert.True(router.ApplyPeerCharge(Charged(8, 2)));

        time.Advance(TimeSpan.FromSeconds(8));
        Assert.True(router.ApplyPeerCharge(new RouterChargeEvent { RouterId = 8, DecisionId = 1, Kind = RouterChargeKind.Live, LiveCount = 1, LiveDigest = KvRouter.DigestOf(1), Heartbeat = 1 }));
        Assert.Equal(0, router.Heartbeat());
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(1, router.Heartbeat());
        Assert.Equal([(1L, 0), (2L, 1)], router.GetStats().Workers.Select(w => (w.WorkerId, w.InFlight)));

        time.Advance(TimeSpan.FromSeconds(7.9));
        Assert.Equal(0, router.Heartbeat());
        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal(1, router.Heartbeat());
        Assert.Equal((0, 0, 2L), (router.GetStats().InFlight, router.GetStats().PeerCharges, router.GetStats().PeerChargesDropped));
    }

    /// <summary>What RouterReplicaSync does over the wire, in process: <paramref name="joiner"/> resyncs its charges of <paramref name="peer"/>.</summary>
    private static void Resync(KvRouter joiner, KvRouter peer, long peerId)
    {
        Assert.True(joiner.BeginPeerSync(peerId));
        (long heartbeat, long last, long[] ids) = peer.LiveDecisions();
        IReadOnlyList<long> missing = joiner.ReconcilePeer(peerId, heartbeat, last, ids);
        joiner.EndPeerSync(peerId, peer.LiveCharges(missing));
    }
}

using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Llm.Routing;

/// <summary>The KV router addressing (worker, dp_rank) pairs: a worker with data-parallel ranks is one routing target per rank.</summary>
public sealed class KvRouterDataParallelTests
{
    private static int[] Prompt(int seed, int tokens) => [.. Enumerable.Range(0, tokens).Select(i => ((seed * 131) + (i * 7)) % 1000)];

    private static KvEvent StoredBy(RoutingTarget target, ulong eventId, int[] tokens)
    {
        ulong[] hashes = BlockHasher.SequenceHashes(tokens, 16);
        return new KvEvent(target.WorkerId, eventId, new KvStoredData(null, [.. hashes.Select(h => new KvStoredBlock(h, h))]), target.DpRank);
    }

    [Fact]
    public async Task Route_PrefixHeldByRank1_ChoosesThatRankAndNamesItInTheRequest()
    {
        var router = new KvRouter(KvRouterOptions.Default with { Seed = 1 });
        router.AddWorker(new RoutingTarget(7, 0));
        router.AddWorker(new RoutingTarget(7, 1));
        router.AddWorker(9);
        int[] prompt = Prompt(1, 128);
        Assert.Equal(KvApplyResult.Applied, router.ApplyEvent(StoredBy(new RoutingTarget(7, 1), 1, prompt)));

        using RoutingDecision decision = await router.RouteAsync([.. prompt, 5]);

        Assert.Equal(7, decision.WorkerId);
        Assert.Equal(1, decision.DpRank);
        Assert.Equal(8, decision.OverlapBlocks);
        var request = new GenerateRequest { Version = GenerateRequest.CurrentVersion, TokenIds = prompt };
        Assert.Equal(1, decision.Prepare(request).DpRank);
        Assert.Equal(new Dictionary<RoutingTarget, int> { [new RoutingTarget(7, 1)] = 8 }, router.IndexedOverlap(prompt));
    }

    [Fact]
    public async Task Route_WorkerWithOneEngine_NamesNoRank_RequestUnchanged()
    {
        var router = new KvRouter();
        router.AddWorker(3);

        using RoutingDecision decision = await router.RouteAsync(Prompt(2, 40));

        Assert.Null(decision.DpRank);
        var request = new GenerateRequest { Version = GenerateRequest.CurrentVersion, TokenIds = [1] };
        Assert.Same(request, decision.Prepare(request));
    }

    [Fact]
    public async Task Route_CandidatesByInstance_AdmitEveryRankOfAnAllowedWorker()
    {
        var router = new KvRouter(KvRouterOptions.Default with { Seed = 3 });
        for (int rank = 0; rank < 4; rank++)
        {
            router.AddWorker(new RoutingTarget(7, rank));
        }

        router.AddWorker(9);
        var ranks = new HashSet<int?>();
        var leases = new List<WorkerLease>();
        for (int i = 0; i < 4; i++)
        {
            // Each in flight: the next unrelated prompt goes to the least loaded rank, so four requests use four ranks.
            WorkerLease lease = await router.RouteAsync(new WorkerRouteRequest { RequestId = $"r{i}", TokenIds = Prompt(10 + i, 64), Candidates = [7] });
            Assert.Equal(7, lease.WorkerId);
            ranks.Add(lease.DpRank);
            leases.Add(lease);
        }

        Assert.Equal([0, 1, 2, 3], ranks.Order());
        foreach (WorkerLease lease in leases)
        {
            await lease.DisposeAsync();
        }
    }

    [Fact]
    public void LoadAndRemoval_AreByRank_AndAWorkerLeavingTakesEveryRank()
    {
        // Time stands still: a load report does not fade between its arrival and the snapshot.
        var router = new KvRouter(timeProvider: new ManualTimeProvider());
        router.AddWorker(new RoutingTarget(7, 0));
        router.AddWorker(new RoutingTarget(7, 1));
        router.AddWorker(9);
        router.ApplyEvent(StoredBy(new RoutingTarget(7, 1), 1, Prompt(1, 64)));
        router.UpdateLoad(new WorkerLoad { WorkerId = 7, DpRank = 1, Waiting = 3, KvBlocksUsed = 10, KvBlocksTotal = 100 });
        router.UpdateLoad(new WorkerLoad { WorkerId = 7, DpRank = 0, Waiting = 2, KvBlocksTotal = 100 });

        WorkerLoadSnapshot[] snapshots = [.. router.GetStats().Workers];
        Assert.Equal([(7L, 0), (7L, 1), (9L, 0)], snapshots.Select(w => (w.WorkerId, w.DpRank)));
        Assert.Equal(10, snapshots[1].ReportedBlocksUsed, 3);
        Assert.Equal(0, snapshots[0].ReportedBlocksUsed);
        Assert.Equal(4, snapshots[1].IndexedBlocks);
        Assert.Equal(5, router.ReportedWaiting([7]));

        Assert.True(router.RemoveTarget(new RoutingTarget(7, 1)));
        Assert.Equal([new RoutingTarget(7, 0), new RoutingTarget(9, 0)], router.Workers);
        Assert.Equal(0, router.Index.BlockCount);
        Assert.True(router.RemoveWorker(7));
        Assert.Equal([new RoutingTarget(9, 0)], router.Workers);
        Assert.False(router.RemoveWorker(7));
        Assert.Equal(KvApplyResult.Stale, router.ApplyEvent(StoredBy(new RoutingTarget(7, 0), 1, Prompt(1, 32))));
    }

    [Fact]
    public void RoutingTarget_OrdersByWorkerThenRank_AndPrintsTheRank()
    {
        RoutingTarget[] targets = [new(9, 0), new(7, 1), new(7, 0)];

        Assert.Equal([new RoutingTarget(7, 0), new RoutingTarget(7, 1), new RoutingTarget(9, 0)], targets.Order());
        Assert.Equal("1f", new RoutingTarget(31).ToString());
        Assert.Equal("1f/dp2", new RoutingTarget(31, 2).ToString());
    }
}

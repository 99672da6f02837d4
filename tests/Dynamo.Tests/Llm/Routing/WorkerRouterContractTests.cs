using Dynamo.Llm.Routing;

namespace Dynamo.Tests.Llm.Routing;

/// <summary>
/// What every <see cref="IWorkerRouter"/> promises its caller (the pipeline relies on nothing else), run
/// against each mode: <see cref="RoundRobinWorkerRouterTests"/>, <see cref="RandomWorkerRouterTests"/>,
/// <see cref="KvWorkerRouterContractTests"/>.
/// </summary>
public abstract class WorkerRouterContractTests
{
    /// <summary>Workers 1..10 exist; requests name their candidates among them.</summary>
    private protected abstract IWorkerRouter Create();

    /// <summary>Requests the router has charged and not released (0 for modes that charge nothing).</summary>
    private protected virtual int InFlight(IWorkerRouter router) => 0;

    private static WorkerRouteRequest Request(string id, params long[] candidates) => new()
    {
        RequestId = id,
        TokenIds = [.. Enumerable.Range(0, 40).Select(t => (id.GetHashCode(StringComparison.Ordinal) & 0xFFF) + t)],
        Candidates = candidates,
    };

    [Fact]
    public async Task RouteAsync_ManyRequests_EveryLeaseOnACandidate()
    {
        await using IWorkerRouter router = Create();
        for (int i = 0; i < 60; i++)
        {
            await using WorkerLease lease = await router.RouteAsync(Request($"r{i}", 3, 5, 9));
            Assert.Contains(lease.WorkerId, new long[] { 3, 5, 9 });
        }
    }

    [Fact]
    public async Task RouteAsync_OneCandidate_AlwaysIt()
    {
        await using IWorkerRouter router = Create();
        for (int i = 0; i < 10; i++)
        {
            await using WorkerLease lease = await router.RouteAsync(Request($"r{i}", 7));
            Assert.Equal(7, lease.WorkerId);
        }
    }

    [Fact]
    public async Task Lease_FirstTokenCompleteDispose_IdempotentAndReleased()
    {
        await using IWorkerRouter router = Create();
        WorkerLease lease = await router.RouteAsync(Request("a", 1, 2));
        lease.MarkFirstToken();
        lease.MarkFirstToken();
        lease.Complete(16);
        lease.Complete(16);
        await lease.DisposeAsync();
        await lease.DisposeAsync();
        Assert.Equal(0, InFlight(router));
    }

    [Fact]
    public async Task Lease_DisposedWithoutComplete_Released()
    {
        await using IWorkerRouter router = Create();
        var leases = new List<WorkerLease>();
        for (int i = 0; i < 5; i++)
        {
            leases.Add(await router.RouteAsync(Request($"r{i}", 1, 2, 3)));
        }

        foreach (WorkerLease lease in leases)
        {
            await lease.DisposeAsync();
        }

        Assert.Equal(0, InFlight(router));
    }

    [Fact]
    public async Task Lease_Prepare_LeavesAPlainRouteUnchanged()
    {
        await using IWorkerRouter router = Create();
        await using WorkerLease lease = await router.RouteAsync(Request("a", 4));
        var request = new Dynamo.Llm.Protocols.Worker.GenerateRequest { Version = 1, RequestId = "a", TokenIds = [1, 2, 3] };
        Assert.Same(request, lease.Prepare(request));
    }

    [Fact]
    public async Task RouteAsync_Cancelled_ThrowsOrLeasesNothingLeft()
    {
        await using IWorkerRouter router = Create();
        using var cancel = new CancellationTokenSource();
        await cancel.CancelAsync();
        try
        {
            await using WorkerLease lease = await router.RouteAsync(Request("a", 1), cancel.Token);
        }
        catch (OperationCanceledException)
        {
            // A router may refuse a cancelled request outright.
        }

        Assert.Equal(0, InFlight(router));
    }
}

public sealed class RoundRobinWorkerRouterTests : WorkerRouterContractTests
{
    private protected override IWorkerRouter Create() => new RoundRobinWorkerRouter();

    [Fact]
    public async Task RouteAsync_SameCandidates_CyclesInOrder()
    {
        await using var router = new RoundRobinWorkerRouter();
        var chosen = new List<long>();
        for (int i = 0; i < 6; i++)
        {
            chosen.Add((await router.RouteAsync(new WorkerRouteRequest { RequestId = "r", TokenIds = [1], Candidates = [2, 4, 6] })).WorkerId);
        }

        Assert.Equal([2, 4, 6, 2, 4, 6], chosen);
        Assert.Equal(RouterModes.RoundRobin, router.Name);
    }
}

public sealed class RandomWorkerRouterTests : WorkerRouterContractTests
{
    private protected override IWorkerRouter Create() => new RandomWorkerRouter(new Random(7));

    [Fact]
    public async Task RouteAsync_ManyRequests_EveryCandidateChosen()
    {
        await using var router = new RandomWorkerRouter(new Random(3));
        var seen = new HashSet<long>();
        for (int i = 0; i < 200; i++)
        {
            seen.Add((await router.RouteAsync(new WorkerRouteRequest { RequestId = "r", TokenIds = [1], Candidates = [1, 2, 3, 4] })).WorkerId);
        }

        Assert.Equal([1, 2, 3, 4], seen.Order());
        Assert.Equal(RouterModes.Random, router.Name);
    }
}

/// <summary>The KV router as an <see cref="IWorkerRouter"/> (its cost and queue: <see cref="KvRouterTests"/>).</summary>
public sealed class KvWorkerRouterContractTests : WorkerRouterContractTests
{
    private protected override IWorkerRouter Create()
    {
        var router = new KvRouter(KvRouterOptions.Default with { BlockSize = 16, Seed = 5 });
        for (int w = 1; w <= 10; w++)
        {
            router.AddWorker(w);
        }

        return router;
    }

    private protected override int InFlight(IWorkerRouter router) => ((KvRouter)router).GetStats().InFlight;

    [Fact]
    public async Task RouteAsync_NoCandidateKnown_RejectedNoWorker()
    {
        await using IWorkerRouter router = Create();
        RouterRejectedException e = await Assert.ThrowsAsync<RouterRejectedException>(async () =>
            await router.RouteAsync(new WorkerRouteRequest { RequestId = "r", TokenIds = [1, 2], Candidates = [99, 100] }));
        Assert.Equal(RouterRejection.NoWorker, e.Reason);
    }

    [Theory]
    [InlineData(-1.0, null, "kv_overlap_score_weight")]
    [InlineData(double.NaN, null, "kv_overlap_score_weight")]
    [InlineData(null, -0.5, "router_temperature")]
    public async Task RouteAsync_BadOverride_RejectedInvalidRequestNamingIt(double? weight, double? temperature, string parameter)
    {
        await using IWorkerRouter router = Create();
        RouterRejectedException e = await Assert.ThrowsAsync<RouterRejectedException>(async () =>
            await router.RouteAsync(new WorkerRouteRequest { RequestId = "r", TokenIds = [1, 2], Candidates = [1], OverlapScoreWeight = weight, Temperature = temperature }));
        Assert.Equal(RouterRejection.InvalidRequest, e.Reason);
        Assert.Equal(parameter, e.Parameter);
        Assert.Equal(0, InFlight(router));
    }

    [Fact]
    public async Task RouteAsync_Lease_IsTheChargedDecision()
    {
        await using IWorkerRouter router = Create();
        WorkerLease lease = await router.RouteAsync(new WorkerRouteRequest { RequestId = "r", TokenIds = [.. Enumerable.Range(0, 64)], Candidates = [2] });
        RoutingDecision decision = Assert.IsType<RoutingDecision>(lease);
        Assert.Equal(1, InFlight(router));
        Assert.Equal(64, ((KvRouter)router).GetStats().Workers.Single(w => w.WorkerId == 2).ActivePrefillTokens);
        lease.MarkFirstToken();
        Assert.Equal(0, ((KvRouter)router).GetStats().Workers.Single(w => w.WorkerId == 2).ActivePrefillTokens);
        lease.Complete(0);
        Assert.True(decision.IsCompleted);
        Assert.Equal(1, ((KvRouter)router).GetStats().ReportedDecisions);
        await lease.DisposeAsync();
        Assert.Equal(0, InFlight(router));
    }
}

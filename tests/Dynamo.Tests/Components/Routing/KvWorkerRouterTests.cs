using System.Text.Json;
using Dynamo.Components.Routing;
using Dynamo.Components.Workers;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Tests.Components.Routing;

/// <summary>
/// kv mode for one endpoint on an in-process cluster with mocker workers: the local KV router, the shared
/// Router component when one is registered (rejections typed across the wire), and the fallbacks that
/// keep a request served when neither knows its candidates or the component cannot be reached.
/// </summary>
public sealed class KvWorkerRouterTests : IAsyncLifetime
{
    private static readonly EndpointAddress Address = new("dynamo", "backend", "generate");
    private readonly InProcessCluster _cluster = new();
    private readonly List<IAsyncDisposable> _owned = [];
    private readonly List<long> _workers = [];
    private DistributedRuntime _runtime = null!;

    public async Task InitializeAsync()
    {
        for (int i = 0; i < 2; i++)
        {
            DistributedRuntime runtime = await _cluster.ConnectAsync();
            var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, WorkerId = runtime.InstanceId, NumGpuBlocks = 1024 });
            EngineWorker worker = await EngineWorker.StartAsync(runtime, engine, Address);
            _owned.Add(worker);
            _owned.Add(engine);
            _owned.Add(runtime);
            _workers.Add(runtime.InstanceId);
        }

        _workers.Sort();
        _runtime = await _cluster.ConnectAsync();
    }

    public async Task DisposeAsync()
    {
        await _runtime.DisposeAsync();
        foreach (IAsyncDisposable d in _owned)
        {
            await d.DisposeAsync();
        }

        await _cluster.DisposeAsync();
    }

    private KvWorkerRouter Create(KvRouterOptions? options = null) =>
        new(_runtime, Address, options ?? KvRouterOptions.Default with { Seed = 1 }, NullLogger.Instance);

    /// <summary>A Router component that knows both workers, and a kv router that sees it registered.</summary>
    private async Task<(RouterServer Component, KvWorkerRouter Router)> StartWithComponentAsync(KvRouterOptions? options = null)
    {
        DistributedRuntime componentRuntime = await _cluster.ConnectAsync();
        _owned.Insert(0, componentRuntime);
        RouterServer component = await RouterServer.StartAsync(componentRuntime, Address, options ?? KvRouterOptions.Default with { Seed = 2 });
        _owned.Insert(0, component);
        await WaitUntilAsync(() => component.Router.Workers.Count == 2);
        KvWorkerRouter router = Create();
        _owned.Insert(0, router);
        await (await router.ComponentAsync()).WaitForInstancesAsync(1);
        return (component, router);
    }

    private static WorkerRouteRequest Request(string id, IReadOnlyList<long> candidates, int tokens = 64, double? temperature = null) => new()
    {
        RequestId = id,
        TokenIds = [.. Enumerable.Range(0, tokens).Select(t => (t * 7) % 500)],
        Candidates = candidates,
        Temperature = temperature,
    };

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (!condition())
        {
            await Task.Delay(10, timeout.Token);
        }
    }

    [Fact]
    public async Task RouteAsync_NoComponent_LocalKvRouterCharges()
    {
        await using KvWorkerRouter router = Create();
        KvRouterService local = await router.LocalAsync();
        await WaitUntilAsync(() => local.Router.Workers.Count == 2);

        WorkerLease lease = await router.RouteAsync(Request("a", _workers));
        Assert.IsType<RoutingDecision>(lease);
        Assert.Contains(lease.WorkerId, _workers);
        Assert.Equal(1, router.LocalStats!.InFlight);
        await lease.DisposeAsync();
        Assert.Equal(0, router.LocalStats!.InFlight);
        Assert.Equal(1, router.LocalStats!.Decisions);
    }

    [Fact]
    public async Task RouteAsync_CandidateTheRouterHasNotSeen_RoundRobinAmongCandidates()
    {
        await using KvWorkerRouter router = Create();
        KvRouterService local = await router.LocalAsync();
        await WaitUntilAsync(() => local.Router.Workers.Count == 2);

        var chosen = new List<long>();
        for (int i = 0; i < 4; i++)
        {
            await using WorkerLease lease = await router.RouteAsync(Request($"r{i}", [1001, 1002]));
            chosen.Add(lease.WorkerId);
        }

        Assert.Equal([1001, 1002, 1001, 1002], chosen);
        Assert.Equal(0, router.LocalStats!.Decisions);
        Assert.Equal(4, router.LocalStats!.Rejections);
    }

    [Fact]
    public async Task RouteAsync_ComponentRegistered_RoutedAndChargedThereUntilDisposed()
    {
        var (component, router) = await StartWithComponentAsync(KvRouterOptions.Default with { Seed = 2 });

        WorkerLease lease = await router.RouteAsync(Request("a", _workers));
        Assert.Contains(lease.WorkerId, _workers);
        Assert.Equal(1, component.Router.GetStats().Decisions);
        Assert.Equal(1, component.Router.GetStats().InFlight);
        Assert.Null(router.LocalStats);

        await lease.DisposeAsync();
        await WaitUntilAsync(() => component.Router.GetStats().InFlight == 0);
    }

    [Fact]
    public async Task RouteAsync_ComponentLeaseCompletedWithCachedTokens_TheComponentsDecisionCompletesWithThem()
    {
        var (component, router) = await StartWithComponentAsync(KvRouterOptions.Default with { Seed = 2 });

        WorkerLease lease = await router.RouteAsync(Request("a", _workers));
        lease.Complete(48);
        lease.Complete(16); // the first count holds
        await lease.DisposeAsync();
        await WaitUntilAsync(() => component.Router.GetStats().InFlight == 0);
        RouterStats stats = component.Router.GetStats();
        Assert.Equal((1, 48L), (stats.ReportedDecisions, stats.ReportedActualHitTokens));

        // Without a count (cancelled, failed), the stream's close releases the charge and reports nothing.
        WorkerLease cancelled = await router.RouteAsync(Request("b", _workers));
        await cancelled.DisposeAsync();
        await WaitUntilAsync(() => component.Router.GetStats().InFlight == 0);
        Assert.Equal((2L, 1L), (component.Router.GetStats().Decisions, component.Router.GetStats().ReportedDecisions));
    }

    [Fact]
    public async Task RouteAsync_ComponentLeaseFirstToken_TheComponentReleasesItsPrefillWhileTheRequestRuns()
    {
        var (component, router) = await StartWithComponentAsync(KvRouterOptions.Default with { Seed = 2 });

        WorkerLease lease = await router.RouteAsync(Request("a", _workers));
        WorkerLoadSnapshot Chosen() => component.Router.GetStats().Workers.Single(w => w.WorkerId == lease.WorkerId);
        Assert.Equal(64, Chosen().ActivePrefillTokens);
        lease.MarkFirstToken();
        await WaitUntilAsync(() => Chosen().ActivePrefillTokens == 0);
        Assert.Equal(1, Chosen().InFlight);

        await lease.DisposeAsync();
        await WaitUntilAsync(() => component.Router.GetStats().InFlight == 0);
    }

    [Fact]
    public async Task RouteAsync_ComponentQueueFull_RejectedQueueFull()
    {
        var (component, router) = await StartWithComponentAsync(KvRouterOptions.Default with { Seed = 2, DefaultBatchBudget = 1, MaxQueue = 0 });

        await using WorkerLease first = await router.RouteAsync(Request("a", [_workers[0]]));
        RouterRejectedException e = await Assert.ThrowsAsync<RouterRejectedException>(async () => await router.RouteAsync(Request("b", [_workers[0]])));
        Assert.Equal(RouterRejection.QueueFull, e.Reason);
    }

    [Fact]
    public async Task RouteAsync_ComponentGivenBadOverride_RejectedInvalidRequest()
    {
        var (component, router) = await StartWithComponentAsync();

        RouterRejectedException e = await Assert.ThrowsAsync<RouterRejectedException>(async () => await router.RouteAsync(Request("a", _workers, temperature: -1)));
        Assert.Equal(RouterRejection.InvalidRequest, e.Reason);
    }

    [Fact]
    public async Task RouteAsync_ComponentKnowsNoCandidate_RoundRobinAmongCandidates()
    {
        var (component, router) = await StartWithComponentAsync();

        await using WorkerLease lease = await router.RouteAsync(Request("a", [4242]));
        Assert.Equal(4242, lease.WorkerId);
        Assert.Equal(1, component.Router.GetStats().Rejections);
    }

    [Fact]
    public async Task RouteAsync_ComponentRegisteredButUnreachable_RoutedByTheLocalIndex()
    {
        // A registration whose subject nothing serves: the component died without leaving discovery.
        var dead = new InstanceRecord
        {
            Namespace = "dynamo",
            Component = "router",
            Endpoint = RouterServer.RouteEndpoint,
            InstanceId = 0x5eed,
            Transport = "nats",
            Subject = "dyn.dynamo.router.route.dead",
        };
        EndpointAddress routerAddress = RouterServer.AddressFor(Address);
        await _runtime.Discovery.PutAsync(routerAddress.InstanceKey(dead.InstanceId), JsonSerializer.SerializeToUtf8Bytes(dead, RuntimeJsonContext.Default.InstanceRecord), Dynamo.Runtime.Discovery.DiscoveryPutOptions.LeasedKey);
        await using KvWorkerRouter router = Create();
        await (await router.ComponentAsync()).WaitForInstancesAsync(1);
        KvRouterService local = await router.LocalAsync();
        await WaitUntilAsync(() => local.Router.Workers.Count == 2);

        await using WorkerLease lease = await router.RouteAsync(Request("a", _workers));
        Assert.IsType<RoutingDecision>(lease);
        Assert.Equal(1, router.LocalStats!.Decisions);
    }
}

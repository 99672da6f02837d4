using Dynamo.Components.Routing;
using Dynamo.Components.Workers;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Dynamo.Runtime.EventPlane;
using Dynamo.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Tests.Integration;

/// <summary>
/// The shared router component (<see cref="RouterServer"/>, in this process) over real nats-server and etcd hears a
/// request's first token from the frontend's lease (<c>{ns}.router.first_token</c>): the worker's queued prefill drops
/// back while the request still runs, and the completion's cached and output tokens reach its decision (its released
/// charge event carries them to the other replicas).
/// </summary>
[Trait("Category", "Slow")]
public sealed class SharedRouterFirstTokenTests
{
    private static readonly EndpointAddress Address = new("dynamo", "backend", "generate");

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            try
            {
                await Task.Delay(20, timeout.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"timed out waiting until {what}");
            }
        }
    }

    [Fact]
    public async Task ComponentLease_FirstTokenThenCompletion_ItsPrefillReleasedWhileInFlight_AndTheOutcomeReachesTheDecision()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using var owned = new Owned();
        async Task<DistributedRuntime> ConnectAsync() => owned.Add(await DistributedRuntime.ConnectAsync(new RuntimeOptions
        {
            NatsServer = nats.Url,
            EtcdEndpoints = [etcd.Endpoint],
            LeaseTtl = TimeSpan.FromSeconds(5),
        }));

        var workers = new List<long>();
        for (int i = 0; i < 2; i++)
        {
            DistributedRuntime runtime = await ConnectAsync();
            MockerEngine engine = owned.Add(new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, WorkerId = runtime.InstanceId, NumGpuBlocks = 1024 }));
            owned.Add(await EngineWorker.StartAsync(runtime, engine, Address));
            workers.Add(runtime.InstanceId);
        }

        RouterServer component = owned.Add(await RouterServer.StartAsync(await ConnectAsync(), Address, KvRouterOptions.Default with { Seed = 1 }));
        await WaitUntilAsync(() => Task.FromResult(component.Router.Workers.Count == 2), "the router component knows both workers");

        DistributedRuntime frontend = await ConnectAsync();
        IEventSubscription charges = owned.Add(await frontend.Events.SubscribeAsync(RouterReplicaSync.SubjectFor(Address)));
        KvWorkerRouter router = owned.Add(new KvWorkerRouter(frontend, Address, KvRouterOptions.Default with { Seed = 2 }, NullLogger.Instance));
        await (await router.ComponentAsync()).WaitForInstancesAsync(1);
        EndpointClient views = owned.Add(await frontend.CreateClientAsync(RouterServer.ViewAddressFor(Address)));
        await views.WaitForInstancesAsync(1);

        WorkerLease lease = await router.RouteAsync(new WorkerRouteRequest
        {
            RequestId = "first-token",
            TokenIds = [.. Enumerable.Range(0, 64).Select(t => (t * 7) % 500)],
            Candidates = workers,
        });
        Assert.IsType<RemoteRouteLease>(lease);
        async Task<RouterView.Worker> ChosenAsync() => (await RouterServer.ViewOfAsync(views)).Workers.Single(w => w.WorkerId == lease.WorkerId);
        RouterView.Worker before = await ChosenAsync();
        Assert.Equal((1, 64L), (before.InFlight, before.ActivePrefillTokens));

        lease.MarkFirstToken();
        lease.MarkFirstToken(); // told once
        await WaitUntilAsync(async () => (await ChosenAsync()).ActivePrefillTokens == 0, "the router component released the prompt's prefill");
        Assert.Equal(1, (await ChosenAsync()).InFlight);
        Assert.Equal(1, component.InFlightRequests);

        lease.Complete(16, 160);
        await lease.DisposeAsync();
        await WaitUntilAsync(() => Task.FromResult(component.Router.GetStats().InFlight == 0), "the route stream closed");
        Assert.Equal((1L, 16L), (component.Router.GetStats().ReportedDecisions, component.Router.GetStats().ReportedActualHitTokens));

        var seen = new List<RouterChargeEvent>();
        using var read = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await foreach (EventMessage message in charges.ReadAllAsync(read.Token))
        {
            RouterChargeEvent e = RouterChargeEvent.Parse(message.Payload.Span);
            if (e.Kind != RouterChargeKind.Live)
            {
                seen.Add(e);
            }

            if (e.Kind == RouterChargeKind.Released)
            {
                break;
            }
        }

        Assert.Equal([RouterChargeKind.Charged, RouterChargeKind.FirstToken, RouterChargeKind.Released], seen.Select(e => e.Kind));
        Assert.Equal((true, 16, 160), (seen[2].Completed, seen[2].CachedTokens, seen[2].OutputTokens));
    }

    /// <summary>What the test started, disposed in reverse order.</summary>
    private sealed class Owned : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _items = [];

        public T Add<T>(T item)
            where T : IAsyncDisposable
        {
            _items.Add(item);
            return item;
        }

        public async ValueTask DisposeAsync()
        {
            for (int i = _items.Count - 1; i >= 0; i--)
            {
                await _items[i].DisposeAsync();
            }
        }
    }
}

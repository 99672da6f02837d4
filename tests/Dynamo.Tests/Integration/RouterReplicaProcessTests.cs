using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Dynamo.Components.Routing;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Router replicas, active-active, as processes over real nats-server and etcd: two <c>dynamo router</c> replicas,
/// two frontends (<c>--router-mode kv</c>) and mocker workers. The replicas share their charges over the event
/// plane (Routing/README.md, "Router replicas"): a shared prefix sent through both frontends lands on one worker,
/// concurrent requests are spread one per worker with both replicas' in-flight views agreeing, killing a replica
/// loses no request, and a restarted one rebuilds its index from the workers' dumps.
/// </summary>
[Trait("Category", "Slow")]
public sealed class RouterReplicaProcessTests(ITestOutputHelper output)
{
    private static readonly EndpointAddress Workers = new("dynamo", "backend", "generate");

    [Fact]
    public async Task TwoReplicasTwoFrontends_SharedPrefixThenConcurrentRequests_OneHolderAndOneRequestPerWorkerInBothViews()
    {
        await using Deployment d = await Deployment.StartAsync(workers: 4, speedupRatio: 0.05);

        // (1) One prompt prefix, sent alternately through both frontends (each frontend alternates replicas too).
        int[] prefix = Tokens(1, 320);
        Dictionary<string, double> before = await d.RoutedAsync();
        for (int i = 0; i < 6; i++)
        {
            await d.CompleteAsync(d.Http[i % 2], [.. prefix, .. Tokens(100 + i, 20)], maxTokens: 2);
        }

        Dictionary<string, double> after = await d.RoutedAsync();
        string[] used = [.. after.Where(kv => kv.Value > before.GetValueOrDefault(kv.Key)).Select(kv => kv.Key)];
        Assert.True(used.Length == 1, $"the shared prefix went to {used.Length} workers: {string.Join(", ", used)}");
        RouterView[] views = await d.ViewsAsync();
        Assert.Equal(6, views.Sum(v => v.Decisions));
        Assert.All(views, v => Assert.True(v.Decisions > 0, $"replica {v.RouterId:x} routed nothing"));

        // (2) Four long requests with distinct prompts, one after the other, alternately through both frontends: each is
        // sent once both replicas count the previous one, so each sees the others' load.
        using var hold = new CancellationTokenSource();
        var running = new List<Task>();
        for (int i = 0; i < 4; i++)
        {
            running.Add(d.CompleteAsync(d.Http[i % 2], Tokens(200 + i, 200), maxTokens: 500, hold.Token));
            int expected = i + 1;
            await d.WaitForViewsAsync(v => v.All(r => r.InFlight == expected), $"both replicas count {expected} requests in flight");
        }

        views = await d.ViewsAsync();
        foreach (RouterView v in views)
        {
            output.WriteLine($"replica {v.RouterId:x}: {v.Decisions} decisions, {v.PeerCharges} peer charges, in flight per worker {string.Join(' ', v.Workers.Select(w => w.InFlight))}");
            Assert.All(v.Workers, w => Assert.Equal(1, w.InFlight));
        }

        Assert.Equal(Load(views[0]), Load(views[1]));
        Assert.Equal(4, views.Sum(v => v.PeerCharges));

        // Cancelled by their clients: every charge is released on both replicas.
        await hold.CancelAsync();
        foreach (Task request in running)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        }

        await d.WaitForViewsAsync(v => v.All(r => r.InFlight == 0 && r.PeerCharges == 0), "both replicas released every charge");
    }

    [Fact]
    public async Task KillNineOneReplicaUnderLoad_EveryRequestCompletes_RestartedReplicaRebuildsItsIndexAndRoutesAKnownPrefixToItsHolder()
    {
        await using Deployment d = await Deployment.StartAsync(workers: 3, speedupRatio: 1);
        int[] known = Tokens(7, 400);
        Dictionary<string, double> before = await d.RoutedAsync();
        await d.CompleteAsync(d.Http[0], known, maxTokens: 2);
        string holder = (await d.RoutedAsync()).Single(kv => kv.Value > before.GetValueOrDefault(kv.Key)).Key;

        // (3) Clients through both frontends; one replica killed (SIGKILL) while they run.
        using var stop = new CancellationTokenSource();
        var failures = new ConcurrentQueue<string>();
        long completed = 0;
        Task[] clients = [.. Enumerable.Range(0, 6).Select(c => Task.Run(async () =>
        {
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                try
                {
                    await d.CompleteAsync(d.Http[c % 2], Tokens(1000 + (c * 10) + (i % 10), 64), maxTokens: 40);
                    Interlocked.Increment(ref completed);
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException or Xunit.Sdk.XunitException)
                {
                    failures.Enqueue($"client {c}: {e.Message}");
                }
            }
        }))];
        await WaitUntilAsync(() => Interlocked.Read(ref completed) >= 12 || !failures.IsEmpty, "12 requests completed");
        d.Routers[0].Kill();
        long atKill = Interlocked.Read(ref completed);
        await WaitUntilAsync(() => Interlocked.Read(ref completed) >= atKill + 24 || !failures.IsEmpty, "24 more requests completed after the kill");
        await d.WaitForRoutersAsync(1);
        long afterLeave = Interlocked.Read(ref completed);
        await WaitUntilAsync(() => Interlocked.Read(ref completed) >= afterLeave + 12 || !failures.IsEmpty, "12 more requests after the killed replica left discovery");
        await stop.CancelAsync();
        await Task.WhenAll(clients);
        Assert.True(failures.IsEmpty, string.Join('\n', failures));
        output.WriteLine($"{Interlocked.Read(ref completed)} requests completed, {atKill} before the kill");

        // (4) A new replica: its index is rebuilt from the workers' dumps, and it sends the known prefix to its holder.
        await d.Routers[0].DisposeAsync();
        d.Routers[0] = await d.StartRouterAsync();
        await d.WaitForRoutersAsync(2);
        await d.WaitForViewsAsync(
            v => v.Length == 2 && v.All(r => r.Workers.Count == 3) && Indexed(v[0]) == Indexed(v[1]) && v[0].Workers.Sum(w => w.IndexedBlocks) > 0,
            "the restarted replica's index equals the survivor's");
        long restarted = (await d.ViewsAsync()).Select(v => v.RouterId).Single(id => id != d.SurvivorId);
        RouteResponse route = await d.RouteAsync(restarted, known);
        Assert.Equal(holder, EndpointAddress.FormatId(route.WorkerId));
        Assert.Equal(400 / 16 * 16, route.PredictedCachedTokens);
    }

    [Fact]
    public async Task ReplicaStartedWhileAnotherHoldsCharges_CountsThemInItsView_AndTheirReleaseClearsThem()
    {
        await using Deployment d = await Deployment.StartAsync(workers: 2, speedupRatio: 1, routers: 1, frontends: 0);
        long first = (await d.ViewsAsync()).Single().RouterId;

        // Three route streams held open on the only replica (the test plays a frontend): charges made before the second exists.
        var held = new List<IAsyncEnumerator<ReadOnlyMemory<byte>>>();
        for (int i = 0; i < 3; i++)
        {
            held.Add(await d.HoldRouteAsync(first, Tokens(300 + i, 100)));
        }

        d.Routers.Add(await d.StartRouterAsync());
        await d.WaitForRoutersAsync(2);
        await d.WaitForViewsAsync(
            v => v.Length == 2 && v.All(r => r.InFlight == 3 && r.Workers.Count == 2) && Load(v[0]) == Load(v[1]),
            "the new replica counts the three charges made before it started, as the first one does");
        RouterView joined = (await d.ViewsAsync()).Single(v => v.RouterId != first);
        Assert.Equal((0L, 3), (joined.Decisions, joined.PeerCharges));

        // Their release (the streams closed) reaches the new replica as any other: both views are empty again.
        foreach (IAsyncEnumerator<ReadOnlyMemory<byte>> stream in held)
        {
            await stream.DisposeAsync();
        }

        await d.WaitForViewsAsync(v => v.All(r => r.InFlight == 0 && r.PeerCharges == 0), "both replicas released the three charges");
        Assert.All(await d.ViewsAsync(), v => Assert.Equal(0, v.PeerChargesDropped));
    }

    private static int[] Tokens(int seed, int count) => [.. Enumerable.Range(0, count).Select(i => 10 + (((seed * 7919) + (i * 31)) % 500))];

    private static string Load(RouterView v) => string.Join(' ', v.Workers.Select(w => $"{w.WorkerId:x}:{w.InFlight}/{w.ActivePrefillTokens}/{w.ActiveBlocks}"));

    private static string Indexed(RouterView v) => string.Join(' ', v.Workers.Select(w => $"{w.WorkerId:x}:{w.IndexedBlocks}"));

    private static async Task WaitUntilAsync(Func<bool> condition, string what, double seconds = 180)
    {
        DateTime until = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, $"timed out waiting until {what}");
            await Task.Delay(50);
        }
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>nats-server, etcd, two router replicas, two kv-mode frontends, mocker workers; a runtime of the test's own to read the replicas.</summary>
    private sealed class Deployment : IAsyncDisposable
    {
        private readonly NatsServer _nats;
        private readonly EtcdServer _etcd;
        private readonly Dictionary<string, string> _env;
        private readonly List<DynamoProcess> _frontends = [];
        private readonly List<DynamoProcess> _workers = [];
        private DistributedRuntime? _observer;
        private EndpointClient? _routes;
        private EndpointClient? _views;

        private Deployment(NatsServer nats, EtcdServer etcd)
        {
            _nats = nats;
            _etcd = etcd;
            _env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
        }

        public List<DynamoProcess> Routers { get; } = [];

        public List<HttpClient> Http { get; } = [];

        /// <summary>The replica that was not killed (Routers[1]).</summary>
        public long SurvivorId { get; private set; }

        public static async Task<Deployment> StartAsync(int workers, double speedupRatio, int routers = 2, int frontends = 2)
        {
            var d = new Deployment(await NatsServer.StartAsync(), await EtcdServer.StartAsync());
            d._observer = await DistributedRuntime.ConnectAsync(new RuntimeOptions { NatsServer = d._nats.Url, EtcdEndpoints = [d._etcd.Endpoint] });
            d._routes = await d._observer.CreateClientAsync(RouterServer.AddressFor(Workers));
            d._views = await d._observer.CreateClientAsync(RouterServer.ViewAddressFor(Workers));
            for (int i = 0; i < workers; i++)
            {
                DynamoProcess w = DynamoProcess.Start(
                    ["worker", "--engine", "mocker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--speedup-ratio", speedupRatio.ToString(CultureInfo.InvariantCulture), "--lease-ttl", "3"], d._env);
                d._workers.Add(w);
                await w.WaitForLineAsync("serving dynamo.backend.generate", 60);
            }

            for (int i = 0; i < routers; i++)
            {
                d.Routers.Add(await d.StartRouterAsync());
            }

            await d.WaitForRoutersAsync(routers);
            for (int i = 0; i < frontends; i++)
            {
                int port = FreePort();
                DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", port.ToString(CultureInfo.InvariantCulture), "--http-host", "127.0.0.1", "--router-mode", "kv"], d._env);
                d._frontends.Add(frontend);
                d.Http.Add(new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(300) });
                await frontend.WaitForLineAsync("frontend: listening");
            }

            foreach (HttpClient http in d.Http)
            {
                DateTime until = DateTime.UtcNow.AddSeconds(60);
                while (await InstancesAsync(http) != workers)
                {
                    Assert.True(DateTime.UtcNow < until, $"a frontend does not list {workers} workers");
                    await Task.Delay(50);
                }
            }

            await d.WaitForViewsAsync(v => v.Length == routers && v.All(r => r.Workers.Count == workers), $"every replica follows {workers} workers");
            d.SurvivorId = (await d.ViewsAsync()).Select(v => v.RouterId).Max();
            return d;
        }

        public async Task<DynamoProcess> StartRouterAsync()
        {
            DynamoProcess router = DynamoProcess.Start(["router", "--lease-ttl", "3"], _env);
            await router.WaitForLineAsync("router: routing", 60);
            return router;
        }

        public Task WaitForRoutersAsync(int count) => WaitUntilAsync(() => _routes!.Instances.Count == count, $"{count} router replicas are listed", 60);

        /// <summary>Every listed replica's view, by replica id.</summary>
        public async Task<RouterView[]> ViewsAsync()
        {
            var views = new List<RouterView>();
            foreach (InstanceRecord r in _views!.Instances)
            {
                views.Add(await RouterServer.ViewOfAsync(_views, r.InstanceId));
            }

            return [.. views.OrderBy(v => v.RouterId)];
        }

        public async Task WaitForViewsAsync(Func<RouterView[], bool> condition, string what)
        {
            DateTime until = DateTime.UtcNow.AddSeconds(120);
            while (true)
            {
                RouterView[] views = await ViewsAsync();
                if (condition(views))
                {
                    return;
                }

                Assert.True(DateTime.UtcNow < until, $"timed out waiting until {what}: {string.Join(" | ", views.Select(v => $"{v.RouterId:x} {Load(v)} idx {Indexed(v)}"))}");
                await Task.Delay(50);
            }
        }

        /// <summary>A route request sent straight to one replica (the test plays a frontend); the stream is closed at once.</summary>
        public async Task<RouteResponse> RouteAsync(long replica, int[] tokens)
        {
            byte[] payload = RouterServer.Serialize(new RouteRequest { TokenIds = tokens });
            await foreach (ReadOnlyMemory<byte> frame in _routes!.StreamAsync(payload, replica))
            {
                return RouterServer.ParseResponse(frame.Span);
            }

            throw new InvalidDataException("no route");
        }

        /// <summary>A route stream opened on one replica and held open (its charge lasts until it is disposed).</summary>
        public async Task<IAsyncEnumerator<ReadOnlyMemory<byte>>> HoldRouteAsync(long replica, int[] tokens)
        {
            IAsyncEnumerator<ReadOnlyMemory<byte>> stream = _routes!.StreamAsync(RouterServer.Serialize(new RouteRequest { TokenIds = tokens }), replica).GetAsyncEnumerator();
            Assert.True(await stream.MoveNextAsync(), "the replica answered no route");
            return stream;
        }

        /// <summary>Requests routed to each worker (hex id), summed over both frontends.</summary>
        public async Task<Dictionary<string, double>> RoutedAsync()
        {
            var routed = new Dictionary<string, double>();
            foreach (HttpClient http in Http)
            {
                foreach (string line in (await http.GetStringAsync("metrics")).Split('\n').Where(l => l.StartsWith("dynamo_frontend_worker_routed_requests_total{", StringComparison.Ordinal)))
                {
                    string worker = line[(line.IndexOf("worker_id=\"", StringComparison.Ordinal) + 11)..];
                    worker = worker[..worker.IndexOf('"', StringComparison.Ordinal)];
                    routed[worker] = routed.GetValueOrDefault(worker) + double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
                }
            }

            return routed;
        }

        /// <summary>A completion of the prompt <paramref name="tokens"/> (token ids: no template), asserted to finish with <paramref name="maxTokens"/> tokens.</summary>
        public async Task CompleteAsync(HttpClient http, int[] tokens, int maxTokens, CancellationToken cancellationToken = default)
        {
            string body = $$"""{"model":"tiny","prompt":[{{string.Join(',', tokens)}}],"max_tokens":{{maxTokens}},"ignore_eos":true,"temperature":0}""";
            using HttpResponseMessage response = await http.PostAsync("v1/completions", new StringContent(body, Encoding.UTF8, "application/json"), cancellationToken);
            string text = await response.Content.ReadAsStringAsync(cancellationToken);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"HTTP {(int)response.StatusCode}: {text}");
            Assert.Equal(maxTokens, JsonDocument.Parse(text).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        }

        public async ValueTask DisposeAsync()
        {
            foreach (HttpClient http in Http)
            {
                http.Dispose();
            }

            foreach (DynamoProcess p in _frontends.Concat(Routers).Concat(_workers))
            {
                await p.DisposeAsync();
            }

            if (_views is not null)
            {
                await _views.DisposeAsync();
                await _routes!.DisposeAsync();
                await _observer!.DisposeAsync();
            }

            await _etcd.DisposeAsync();
            await _nats.DisposeAsync();
        }

        private static async Task<int> InstancesAsync(HttpClient http)
        {
            using HttpResponseMessage health = await http.GetAsync("health");
            JsonElement root = JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement;
            return root.TryGetProperty("models", out JsonElement models) ? models.EnumerateArray().Sum(m => m.GetProperty("instances").GetArrayLength()) : 0;
        }
    }
}

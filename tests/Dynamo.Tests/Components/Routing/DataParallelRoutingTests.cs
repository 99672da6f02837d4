using System.Text;
using System.Text.Json;
using Dynamo.Components.Routing;
using Dynamo.Components.Workers;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Runtime;

namespace Dynamo.Tests.Components.Routing;

/// <summary>
/// Data parallelism (--dp-size): one worker instance serving two mocker engines as ranks 0 and 1, on an in-process
/// cluster, with the KV router fed from the runtime as a frontend feeds it.
/// </summary>
public sealed class DataParallelRoutingTests
{
    private static readonly EndpointAddress Address = new("dynamo", "backend", "generate");
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private sealed class RankedWorker(DistributedRuntime runtime, MockerEngine[] engines, EngineWorker served) : IAsyncDisposable
    {
        public long Id => runtime.InstanceId;

        public MockerEngine[] Engines => engines;

        public EngineWorker Served => served;

        public static async Task<RankedWorker> StartAsync(InProcessCluster cluster, int ranks, int firstRank = 0)
        {
            DistributedRuntime runtime = await cluster.ConnectAsync();
            MockerEngine[] engines = [.. Enumerable.Range(0, ranks).Select(_ =>
                new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, WorkerId = runtime.InstanceId, NumGpuBlocks = 1024 }))];
            EngineWorker served = await EngineWorker.StartAsync(runtime, engines, Address, EngineWorkerOptions.Default with
            {
                FirstDpRank = firstRank,
                LoadMetricsInterval = TimeSpan.FromMilliseconds(50),
            });
            return new RankedWorker(runtime, engines, served);
        }

        public async ValueTask DisposeAsync()
        {
            await served.DisposeAsync();
            foreach (MockerEngine e in engines)
            {
                await e.DisposeAsync();
            }

            await runtime.DisposeAsync();
        }
    }

    private static int[] Prompt(int seed, int tokens) => [.. Enumerable.Range(0, tokens).Select(i => ((seed * 131) + (i * 7)) % 1000)];

    private static byte[] Request(int[] tokens, int? dpRank, int maxTokens = 4) => Encoding.UTF8.GetBytes(
        $"{{\"version\":1,\"token_ids\":[{string.Join(',', tokens)}],\"sampling\":{{\"max_tokens\":{maxTokens},\"ignore_eos\":true}}" +
        (dpRank is int r ? $",\"dp_rank\":{r}" : "") + "}");

    /// <summary>Sends as a frontend does: the lease's rank in the request, first token and completion reported; returns the cached tokens.</summary>
    private static async Task<int> SendAsync(EndpointClient client, WorkerLease lease, int[] tokens)
    {
        var prepared = lease.Prepare(new GenerateRequest { Version = GenerateRequest.CurrentVersion, TokenIds = tokens });
        int cached = 0;
        bool first = true;
        await foreach (ReadOnlyMemory<byte> r in client.StreamAsync(Request(tokens, prepared.DpRank), lease.WorkerId))
        {
            if (first)
            {
                lease.MarkFirstToken();
                first = false;
            }

            using var doc = JsonDocument.Parse(r);
            if (doc.RootElement.TryGetProperty("cached_tokens", out JsonElement c) && c.ValueKind == JsonValueKind.Number)
            {
                cached = c.GetInt32();
            }
        }

        lease.Complete(cached);
        return cached;
    }

    [Fact]
    public async Task Register_TwoRanks_OneInstanceListingBoth_TwoRoutingTargets()
    {
        await using var cluster = new InProcessCluster();
        await using RankedWorker worker = await RankedWorker.StartAsync(cluster, ranks: 2);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using KvRouterService service = await KvRouterService.StartAsync(frontend, Address);
        await service.WaitForResyncAsync().WaitAsync(Patience);

        InstanceRecord record = Assert.Single(service.Client.Instances);
        Assert.Equal(worker.Id, record.InstanceId);
        Assert.Equal([0, 1], record.DataParallelRanks);
        Assert.Equal([new RoutingTarget(worker.Id, 0), new RoutingTarget(worker.Id, 1)], service.Router.Workers);
        Assert.Equal(2, service.DumpsLoaded);
    }

    [Fact]
    public async Task Route_SharedPrefix_GoesBackToTheRankHoldingIt_AndTheOtherRankTakesOtherWork()
    {
        await using var cluster = new InProcessCluster();
        await using RankedWorker worker = await RankedWorker.StartAsync(cluster, ranks: 2);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using KvRouterService service = await KvRouterService.StartAsync(frontend, Address, KvRouterOptions.Default with { Seed = 5 });
        await service.WaitForResyncAsync().WaitAsync(Patience);
        int[] system = Prompt(3, 256);

        RoutingDecision first = await service.Router.RouteAsync([.. system, 1, 2, 3]);
        int holder = Assert.IsType<int>(first.DpRank);

        // While the first is charged to its rank, an unrelated prompt goes to the other rank: both ranks serve.
        int[] unrelated = Prompt(9, 64);
        RoutingDecision other = await service.Router.RouteAsync(unrelated);
        Assert.Equal(worker.Id, other.WorkerId);
        Assert.Equal(1 - holder, other.DpRank);
        await SendAsync(service.Client, first, [.. system, 1, 2, 3]);
        await SendAsync(service.Client, other, unrelated);
        Assert.Equal(1, worker.Engines[holder].Stats.RequestsFinished);
        Assert.Equal(1, worker.Engines[1 - holder].Stats.RequestsFinished);

        // The holder's KV events carry its rank: the index lists the prefix under (worker, holder) only.
        var holding = new RoutingTarget(worker.Id, holder);
        await Eventually.WaitUntilAsync(() => service.Router.Index.BlockCountOf(holding) >= 16, "the first request's KV events", Patience);
        Assert.Equal(16, service.Router.Index.FindMatches(BlockHasher.SequenceHashes(system, 16)).Get(holding));
        Assert.Equal(0, service.Router.Index.FindMatches(BlockHasher.SequenceHashes(system, 16)).Get(new RoutingTarget(worker.Id, 1 - holder)));

        int[] second = [.. system, 9, 8, 7, 6];
        RoutingDecision next = await service.Router.RouteAsync(second);
        Assert.Equal(holder, next.DpRank);
        Assert.Equal(16, next.IndexedOverlapBlocks);
        Assert.Equal(256, await SendAsync(service.Client, next, second));
        Assert.Equal(256, worker.Engines[holder].Stats.PrefixHitTokens);
        Assert.Equal(0, worker.Engines[1 - holder].Stats.PrefixHitTokens);
    }

    [Fact]
    public async Task Events_EachRankPublishesItsKvEventsAndLoadUnderItsRank()
    {
        await using var cluster = new InProcessCluster();
        await using RankedWorker worker = await RankedWorker.StartAsync(cluster, ranks: 2, firstRank: 4);
        await using DistributedRuntime observer = await cluster.ConnectAsync();
        await using IEventSubscription kv = await observer.Events.SubscribeAsync(Address.EventSubject(EngineWorker.KvEventsTopic));
        await using IEventSubscription load = await observer.Events.SubscribeAsync(Address.EventSubject(EngineWorker.LoadMetricsTopic));
        await using EndpointClient client = await observer.CreateClientAsync(Address);
        await client.WaitForInstancesAsync().WaitAsync(Patience);

        int[] prompt = Prompt(1, 64);
        await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync(Request(prompt, dpRank: 5), worker.Id))
        {
        }

        using var timeout = new CancellationTokenSource(Patience);
        await foreach (EventMessage m in kv.ReadAllAsync(timeout.Token))
        {
            KvEvent e = KvEventJson.Deserialize(m.Payload.Span);
            Assert.Equal(worker.Id, e.WorkerId);
            Assert.Equal(5, e.DpRank);
            Assert.Equal(1UL, e.EventId);
            break;
        }

        Assert.Equal(1, worker.Engines[1].Stats.RequestsFinished);
        Assert.Equal(0, worker.Engines[0].Stats.RequestsFinished);
        var reported = new HashSet<int>();
        await foreach (EventMessage m in load.ReadAllAsync(timeout.Token))
        {
            WorkerLoad report = JsonSerializer.Deserialize(m.Payload.Span, WorkerJsonContext.Default.WorkerLoad)!;
            Assert.Equal(worker.Id, report.WorkerId);
            reported.Add(report.DpRank);
            if (reported.Count == 2)
            {
                break;
            }
        }

        Assert.Equal([4, 5], reported.Order());

        // The dump endpoint answers for the rank asked; empty asks for this worker's first rank.
        await using EndpointClient dumps = await observer.CreateClientAsync(EngineWorker.DumpAddress(Address));
        await dumps.WaitForInstancesAsync().WaitAsync(Patience);
        KvEventDump rank5 = await DumpAsync(dumps, worker.Id, KvDumpRequest.Serialize(5));
        KvEventDump first = await DumpAsync(dumps, worker.Id, []);
        Assert.Equal(5, rank5.DpRank);
        Assert.Equal(4, rank5.Stored.Sum(g => g.Blocks.Count));
        Assert.Equal(4, first.DpRank);
        Assert.Empty(first.Stored);
    }

    [Fact]
    public async Task Generate_ARankTheWorkerHasNot_InvalidRequestNamingItsRanks_AndTheWorkerServesOn()
    {
        await using var cluster = new InProcessCluster();
        await using RankedWorker worker = await RankedWorker.StartAsync(cluster, ranks: 2);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using EndpointClient client = await frontend.CreateClientAsync(Address);
        await client.WaitForInstancesAsync().WaitAsync(Patience);

        RequestPlaneException bad = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync(Request(Prompt(1, 8), dpRank: 2), worker.Id))
            {
            }
        });
        Assert.Equal("invalid_request", bad.Code);
        Assert.Contains("dp_rank 2", bad.Message, StringComparison.Ordinal);
        Assert.Contains("0..1", bad.Message, StringComparison.Ordinal);

        // A request naming no rank goes to the least loaded one; the worker is unharmed.
        await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync(Request(Prompt(2, 8), dpRank: null), worker.Id))
        {
        }

        Assert.Equal(1, worker.Engines.Sum(e => e.Stats.RequestsFinished));
        Assert.Equal(1, worker.Served.Stats.RequestsFinished);
    }

    private static async Task<KvEventDump> DumpAsync(EndpointClient dumps, long worker, byte[] payload)
    {
        await foreach (ReadOnlyMemory<byte> r in dumps.StreamAsync(payload, worker))
        {
            return KvEventJson.DeserializeDump(r.Span);
        }

        throw new InvalidOperationException("the dump endpoint answered nothing");
    }
}

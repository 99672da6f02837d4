using System.Text;
using System.Text.Json;
using Dynamo.Components.Routing;
using Dynamo.Components.Workers;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Dynamo.Tests.Runtime;

namespace Dynamo.Tests.Components.Routing;

/// <summary>The router fed from the runtime, with mocker engines served by real EngineWorkers on an in-process cluster.</summary>
public sealed class KvRouterServiceTests
{
    private static readonly EndpointAddress Address = new("dynamo", "backend", "generate");
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private sealed class Worker(DistributedRuntime runtime, MockerEngine engine, EngineWorker served) : IAsyncDisposable
    {
        public long Id => runtime.InstanceId;

        public MockerEngine Engine => engine;

        public static async Task<Worker> StartAsync(InProcessCluster cluster)
        {
            DistributedRuntime runtime = await cluster.ConnectAsync();
            var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, WorkerId = runtime.InstanceId, NumGpuBlocks = 1024 });
            EngineWorker served = await EngineWorker.StartAsync(runtime, engine, Address);
            return new Worker(runtime, engine, served);
        }

        public async ValueTask DisposeAsync()
        {
            await served.DisposeAsync();
            await engine.DisposeAsync();
            await runtime.DisposeAsync();
        }
    }

    private static int[] Prompt(int seed, int tokens) => [.. Enumerable.Range(0, tokens).Select(i => ((seed * 131) + (i * 7)) % 1000)];

    private static byte[] Request(int[] tokens, int maxTokens = 4) => Encoding.UTF8.GetBytes(
        $"{{\"version\":1,\"token_ids\":[{string.Join(',', tokens)}],\"sampling\":{{\"max_tokens\":{maxTokens},\"ignore_eos\":true}}}}");

    /// <summary>Sends as a frontend would: first token and completion reported to the decision; returns the engine's cached tokens.</summary>
    private static async Task<int> SendAsync(EndpointClient client, RoutingDecision decision, int[] tokens)
    {
        int cached = 0;
        bool first = true;
        await foreach (ReadOnlyMemory<byte> r in client.StreamAsync(Request(tokens), decision.WorkerId))
        {
            if (first)
            {
                decision.MarkFirstToken();
                first = false;
            }

            using var doc = JsonDocument.Parse(r);
            if (doc.RootElement.TryGetProperty("cached_tokens", out JsonElement c) && c.ValueKind == JsonValueKind.Number)
            {
                cached = c.GetInt32();
            }
        }

        decision.Complete(cached);
        return cached;
    }

    private static async Task<int> DumpedBlocksAsync(MockerEngine engine) => (await engine.DumpKvAsync()).Stored.Sum(g => g.Blocks.Count);

    [Fact]
    public async Task StartAsync_MidTraffic_RebuildsIndexFromDumps()
    {
        await using var cluster = new InProcessCluster();
        await using Worker w1 = await Worker.StartAsync(cluster);
        await using Worker w2 = await Worker.StartAsync(cluster);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using EndpointClient direct = await frontend.CreateClientAsync(Address);
        int[] a = Prompt(1, 160), b = Prompt(2, 160);
        await foreach (ReadOnlyMemory<byte> _ in direct.StreamAsync(Request(a), w1.Id))
        {
        }

        await foreach (ReadOnlyMemory<byte> _ in direct.StreamAsync(Request(b), w2.Id))
        {
        }

        await using KvRouterService service = await KvRouterService.StartAsync(frontend, Address, KvRouterOptions.Default with { Seed = 1 });
        await service.WaitForResyncAsync().WaitAsync(Patience);

        Assert.Equal([w1.Id, w2.Id], service.Router.Workers.Order());
        Assert.Equal(10, service.Router.Index.FindMatches(BlockHasher.SequenceHashes(a, 16)).Get(w1.Id));
        Assert.Equal(10, service.Router.Index.FindMatches(BlockHasher.SequenceHashes(b, 16)).Get(w2.Id));
        Assert.Equal(await DumpedBlocksAsync(w1.Engine), service.Router.Index.BlockCountOf(w1.Id));
        using RoutingDecision d = await service.Router.RouteAsync(b);
        Assert.Equal(w2.Id, d.WorkerId);
    }

    [Fact]
    public async Task Route_SharedPrefix_SecondRequestGoesToHolderAndHitsCache()
    {
        await using var cluster = new InProcessCluster();
        await using Worker w1 = await Worker.StartAsync(cluster);
        await using Worker w2 = await Worker.StartAsync(cluster);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using KvRouterService service = await KvRouterService.StartAsync(frontend, Address, KvRouterOptions.Default with { Seed = 2 });
        await service.WaitForResyncAsync().WaitAsync(Patience);
        int[] system = Prompt(3, 256);

        RoutingDecision first = await service.Router.RouteAsync([.. system, 1, 2, 3]);
        await SendAsync(service.Client, first, [.. system, 1, 2, 3]);
        await Eventually.WaitUntilAsync(() => service.Router.Index.BlockCountOf(first.WorkerId) >= 16, "the first request's KV events", Patience);

        int[] second = [.. system, 9, 8, 7, 6];
        RoutingDecision next = await service.Router.RouteAsync(second);
        Assert.Equal(first.WorkerId, next.WorkerId);
        Assert.Equal(16, next.IndexedOverlapBlocks);
        int cached = await SendAsync(service.Client, next, second);

        Assert.Equal(256, cached);
        RouterStats stats = service.Router.GetStats();
        Assert.Equal(2, stats.ReportedDecisions);
        Assert.Equal(256, stats.ReportedActualHitTokens);
        Assert.Equal(256, stats.ReportedPredictedHitTokens);
        Assert.Equal(0, stats.InFlight);
    }

    [Fact]
    public async Task Route_NoKvEvents_NextTurnGoesToItsHolderFromTheRoutersOwnDecisions()
    {
        await using var cluster = new InProcessCluster();
        await using Worker w1 = await Worker.StartAsync(cluster);
        await using Worker w2 = await Worker.StartAsync(cluster);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using KvRouterService service = await KvRouterService.StartAsync(frontend, Address, KvRouterOptions.Default with { Seed = 2, UseKvEvents = false });
        Assert.Equal(2, service.Router.Workers.Count);
        Assert.Empty(service.Router.Index.WorkersNeedingResync);
        int[] turn1 = [.. Prompt(4, 256), 1, 2, 3];

        RoutingDecision first = await service.Router.RouteAsync(turn1);
        await SendAsync(service.Client, first, turn1);
        int[] turn2 = [.. turn1, 9, 8, 7, 6];
        RoutingDecision next = await service.Router.RouteAsync(turn2);
        Assert.Equal(first.WorkerId, next.WorkerId);
        Assert.Equal((16, 0), (next.OverlapBlocks, next.IndexedOverlapBlocks));
        int cached = await SendAsync(service.Client, next, turn2);

        Assert.Equal(256, cached);
        Assert.Equal(0, service.Router.Index.BlockCountOf(first.WorkerId));
        Assert.Equal(0, service.DumpsLoaded);
    }

    [Fact]
    public async Task EventGap_ResyncsFromWorkerDump()
    {
        await using var cluster = new InProcessCluster();
        await using Worker w1 = await Worker.StartAsync(cluster);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using KvRouterService service = await KvRouterService.StartAsync(frontend, Address, KvRouterOptions.Default with { Seed = 3 });
        await service.WaitForResyncAsync().WaitAsync(Patience);
        long dumps = service.DumpsLoaded;
        await SendAsync(service.Client, await service.Router.RouteAsync(Prompt(4, 96)), Prompt(4, 96));
        await Eventually.WaitUntilAsync(() => service.Router.Index.BlockCountOf(w1.Id) >= 6, "the request's KV events", Patience);

        // An event from the future: the router has missed some.
        ulong last = service.Router.Index.LastEventId(w1.Id);
        var future = new KvEvent(w1.Id, last + 10, new KvRemovedData([BlockHasher.SequenceHashes(Prompt(4, 96), 16)[0]]));
        await frontend.Events.PublishAsync(Address.EventSubject(EngineWorker.KvEventsTopic), KvEventJson.SerializeToUtf8(future));

        await Eventually.WaitUntilAsync(() => service.DumpsLoaded > dumps && service.Router.Index.WorkersNeedingResync.Count == 0, "a resync from the dump", Patience);
        Assert.Equal(await DumpedBlocksAsync(w1.Engine), service.Router.Index.BlockCountOf(w1.Id));
        Assert.Equal(6, service.Router.Index.FindMatches(BlockHasher.SequenceHashes(Prompt(4, 96), 16)).Get(w1.Id));

        // The stream goes on from the dump.
        await SendAsync(service.Client, await service.Router.RouteAsync(Prompt(5, 96)), Prompt(5, 96));
        await Eventually.WaitUntilAsync(() => service.Router.Index.FindMatches(BlockHasher.SequenceHashes(Prompt(5, 96), 16)).Get(w1.Id) == 6, "events after the dump", Patience);
    }

    [Fact]
    public async Task WorkerLeavesDiscovery_PurgedFromRouterAndIndex()
    {
        await using var cluster = new InProcessCluster();
        await using Worker w1 = await Worker.StartAsync(cluster);
        Worker w2 = await Worker.StartAsync(cluster);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using KvRouterService service = await KvRouterService.StartAsync(frontend, Address, KvRouterOptions.Default with { Seed = 4 });
        await service.WaitForResyncAsync().WaitAsync(Patience);
        long gone = w2.Id;
        await SendAsync(service.Client, await service.Router.RouteAsync(Prompt(6, 64)), Prompt(6, 64));

        await w2.DisposeAsync();

        await Eventually.WaitUntilAsync(() => !service.Router.Workers.Contains(gone), "the worker's removal", Patience);
        Assert.DoesNotContain(gone, service.Router.Index.Workers);
        Assert.Equal(0, service.Router.Index.BlockCountOf(gone));
        for (int i = 0; i < 10; i++)
        {
            using RoutingDecision d = await service.Router.RouteAsync(Prompt(7 + i, 64));
            Assert.Equal(w1.Id, d.WorkerId);
        }
    }

    [Fact]
    public async Task KvDumpEndpoint_AnswersWithEngineDump()
    {
        await using var cluster = new InProcessCluster();
        await using Worker w1 = await Worker.StartAsync(cluster);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using EndpointClient generate = await frontend.CreateClientAsync(Address);
        await using EndpointClient dumps = await frontend.CreateClientAsync(EngineWorker.DumpAddress(Address));
        await foreach (ReadOnlyMemory<byte> _ in generate.StreamAsync(Request(Prompt(8, 80))))
        {
        }

        var answers = new List<KvEventDump>();
        await foreach (ReadOnlyMemory<byte> r in dumps.StreamAsync(ReadOnlyMemory<byte>.Empty, w1.Id))
        {
            answers.Add(KvEventJson.DeserializeDump(r.Span));
        }

        KvEventDump dump = Assert.Single(answers);
        Assert.Equal(await w1.Engine.DumpKvAsync(), dump);
        Assert.Equal(w1.Id, dump.WorkerId);
        Assert.Equal(w1.Engine.KvEvents!.LastEventId, dump.LastEventId);
        Assert.Equal(5, dump.Stored.Sum(g => g.Blocks.Count));
    }

    [Fact]
    public async Task EchoEngine_DumpKvAsync_Empty()
    {
        await using var echo = new EchoEngine();
        KvEventDump dump = await echo.DumpKvAsync();
        Assert.Empty(dump.Stored);
        Assert.Equal(0UL, dump.LastEventId);
    }
}

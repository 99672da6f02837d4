using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Dynamo.Components.ModelCards;
using Dynamo.Components.Workers;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.ModelCards;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Frontend;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.Engines;
using Dynamo.Tests.Runtime;
using Xunit.Abstractions;

namespace Dynamo.Tests.Components.Workers;

/// <summary>A real engine served on the in-process runtime, called from another component as a frontend would.</summary>
public sealed class EngineWorkerTests(ITestOutputHelper output)
{
    private static readonly EndpointAddress Address = new("dynamo", "backend", "generate");

    private static byte[] Request(int[] tokens, int maxTokens, string extra = "") => Encoding.UTF8.GetBytes(
        $"{{\"version\":1,\"token_ids\":[{string.Join(',', tokens)}],\"sampling\":{{\"temperature\":0,\"max_tokens\":{maxTokens},\"ignore_eos\":true,\"logprobs\":true}}{extra}}}");

    private static async Task<List<JsonElement>> CallAsync(EndpointClient client, byte[] payload)
    {
        var list = new List<JsonElement>();
        await foreach (ReadOnlyMemory<byte> r in client.StreamAsync(payload))
        {
            list.Add(JsonDocument.Parse(r).RootElement.Clone());
        }

        return list;
    }

    [Fact]
    public async Task Generate_OverRuntime_SameTokensAsEngineDirectly()
    {
        int[] prompt = [5, 17, 99, 3, 42, 42, 7];
        await using InferenceEngine direct = InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        var (expected, expectedLogprobs, _) = await EngineContractTests.CollectAsync(direct, new EngineRequest("d", prompt, SamplingParams.Greedy with { MaxTokens = 12, IgnoreEos = true, Logprobs = true }));

        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using InferenceEngine engine = InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20, WorkerId = workerRuntime.InstanceId });
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address);
        await using EndpointClient client = await frontend.CreateClientAsync(Address);

        List<JsonElement> responses = await CallAsync(client, Request(prompt, 12, ",\"unknown_field\":{\"x\":1}"));
        Assert.Equal(expected, responses.SelectMany(r => r.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32())));
        Assert.Equal(expectedLogprobs, responses.SelectMany(r => r.GetProperty("logprobs").EnumerateArray().Select(t => t.GetSingle())));
        JsonElement last = responses[^1];
        Assert.Equal("length", last.GetProperty("finish_reason").GetString());
        Assert.Equal(prompt.Length, last.GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task Generate_CallerInATrace_TheRequestsLogLineNamesItsTraceId()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using InferenceEngine engine = InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        var logger = new TestOutputLogger(output, "worker");
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address, EngineWorkerOptions.Default, logger);
        await using EndpointClient client = await frontend.CreateClientAsync(Address);

        // The caller's context travels with the request (here the in-process plane's; over NATS, its headers), whether or not this process records spans.
        using Activity caller = new Activity("caller").SetIdFormat(ActivityIdFormat.W3C).Start();
        await CallAsync(client, Request([5, 17, 99, 3], 3));
        caller.Stop();

        string line = Assert.Single(logger.Entries, e => e.Id.Id == 4007).Message;
        Assert.StartsWith("request ", line);
        Assert.EndsWith($" trace_id={caller.TraceId.ToHexString()}", line);
        foreach (string field in new[] { $" worker={EndpointAddress.FormatId(worker.InstanceId)} ", " tokens_in=4 ", " tokens_out=3 ", " finish=length ", " prefill=local " })
        {
            Assert.Contains(field, line);
        }
    }

    [Theory]
    [InlineData("not json", "invalid_request")]
    [InlineData("{\"version\":2,\"token_ids\":[1]}", "unsupported_version")]
    [InlineData("{\"version\":1,\"token_ids\":[]}", "invalid_request")]
    [InlineData("{\"version\":1,\"token_ids\":[1],\"sampling\":{\"temperature\":5}}", "invalid_request")]
    [InlineData("{\"version\":1,\"token_ids\":[99999999]}", "invalid_request")]
    public async Task Generate_BadPayload_ErrorWithCodeAndWorkerKeepsServing(string payload, string code)
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using InferenceEngine engine = InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address);
        await using EndpointClient client = await frontend.CreateClientAsync(Address);

        RequestPlaneException e = await Assert.ThrowsAsync<RequestPlaneException>(() => CallAsync(client, Encoding.UTF8.GetBytes(payload)));
        Assert.Equal(RequestErrorKind.Remote, e.Kind);
        Assert.Equal(code, e.Code);
        Assert.Equal(3, (await CallAsync(client, Request([1, 2, 3], 3))).Sum(r => r.GetProperty("token_ids").GetArrayLength()));
    }

    [Fact]
    public async Task Generate_MaxWaitingRequestsReached_RefusedAtOnceWithWorkerOverloaded()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using var engine = new HeldEchoEngine();
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address, EngineWorkerOptions.Default with { MaxWaitingRequests = 2 });
        await using EndpointClient client = await frontend.CreateClientAsync(Address);
        engine.Hold();
        Task<List<JsonElement>> first = CallAsync(client, Request([1, 2, 3], 3));
        Task<List<JsonElement>> second = CallAsync(client, Request([4, 5, 6], 3));
        await Eventually.WaitUntilAsync(() => worker.WaitingRequests == 2, "two requests waiting at the worker");

        var frames = new List<ReadOnlyMemory<byte>>();
        RequestPlaneException e = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> frame in client.StreamAsync(Request([7, 8, 9], 3)))
            {
                frames.Add(frame);
            }
        });

        Assert.Empty(frames);
        Assert.Equal((RequestErrorKind.Remote, EngineWorker.OverloadedCode), (e.Kind, e.Code));
        Assert.Contains("--max-waiting-requests", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, worker.RequestsRefused);
        Assert.Equal(0, worker.RequestErrors);
        Assert.Equal(2, engine.Submitted.Count);
        engine.Release();
        Assert.Equal(3, (await first).Sum(r => r.GetProperty("token_ids").GetArrayLength()));
        Assert.Equal(3, (await second).Sum(r => r.GetProperty("token_ids").GetArrayLength()));
        await Eventually.WaitUntilAsync(() => worker.WaitingRequests == 0 && worker.InFlight == 0, "the worker to be idle");
        Assert.Equal(3, (await CallAsync(client, Request([7, 8, 9], 3))).Sum(r => r.GetProperty("token_ids").GetArrayLength()));
    }

    [Fact]
    public async Task KvEvents_PublishedOnEventPlane()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime router = await cluster.ConnectAsync();
        await using IEventSubscription events = await router.Events.SubscribeAsync(Address.EventSubject(EngineWorker.KvEventsTopic));
        await using InferenceEngine engine = InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20, WorkerId = workerRuntime.InstanceId });
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address);
        await using EndpointClient client = await router.CreateClientAsync(Address);

        int[] prompt = [.. Enumerable.Range(10, 40)];
        await CallAsync(client, Request(prompt, 2));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await foreach (EventMessage m in events.ReadAllAsync(timeout.Token))
        {
            KvEvent e = KvEventJson.Deserialize(m.Payload.Span);
            Assert.Equal(workerRuntime.InstanceId, e.WorkerId);
            KvStoredData stored = Assert.IsType<KvStoredData>(e.Data);
            Assert.Equal(BlockHasher.SequenceHashes(prompt, engine.BlockSize)[0], stored.Blocks[0].BlockHash);
            break;
        }
    }

    [Fact]
    public async Task ModelCard_FrontendWithoutFilesRebuildsSameTokenizer()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        using LoadedModel model = LoadedModel.Load(TestModels.Tiny.Value);
        ModelDeploymentCard published = await ModelCardStore.PublishAsync(workerRuntime, Address,
            new ModelCardSource("tiny", "gguf", TestModels.Tiny.Value, 256, 16, model.Config.VocabSize));

        var (key, card) = Assert.Single(await ModelCardStore.ListAsync(frontend.Discovery));
        Assert.Equal(Address.ModelCardKey(workerRuntime.InstanceId), key);
        Assert.Equal(published, card with { TokenizerFiles = published.TokenizerFiles });
        Assert.Equal("dynamo.backend.generate", card.Endpoint);
        string cache = Path.Combine(Path.GetTempPath(), "dynamo-card-cache", Guid.NewGuid().ToString("N"));
        TokenizerBundle rebuilt = await ModelCardStore.LoadTokenizerAsync(card, frontend.Blobs, cache);
        foreach (string text in new[] { "Hello world", "  spaces and\nnewlines", "héllo 😀" })
        {
            Assert.Equal(model.Tokenizer.Encode(text, true), rebuilt.Tokenizer.Encode(text, true));
        }

        Assert.Equal(model.ChatTemplate is null, rebuilt.ChatTemplate is null);
        Assert.Equal(model.Text.ChatTemplateSource, rebuilt.ChatTemplateSource);
        Assert.True(new FileInfo(Directory.GetFiles(cache, "tokenizer.gguf", SearchOption.AllDirectories)[0]).Length < new FileInfo(TestModels.Tiny.Value).Length);
        Directory.Delete(cache, recursive: true);
    }

    [Fact]
    public async Task Generate_MockerEngine_ServedUnchangedWithPrefixHitsAndKvEvents()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using IEventSubscription events = await frontend.Events.SubscribeAsync(Address.EventSubject(EngineWorker.KvEventsTopic));
        await using var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, WorkerId = workerRuntime.InstanceId });
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address);
        await using EndpointClient client = await frontend.CreateClientAsync(Address);

        int[] prompt = [.. Enumerable.Range(10, 40)];
        List<JsonElement> first = await CallAsync(client, Request(prompt, 6));
        List<JsonElement> second = await CallAsync(client, Request(prompt, 6));
        Assert.Equal(6, first.Sum(r => r.GetProperty("token_ids").GetArrayLength()));
        Assert.Equal(
            first.SelectMany(r => r.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32())),
            second.SelectMany(r => r.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32())));
        Assert.Equal("length", second[^1].GetProperty("finish_reason").GetString());
        Assert.Equal(40, second[^1].GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(0, first[^1].GetProperty("cached_tokens").GetInt32());
        Assert.Equal(32, second[^1].GetProperty("cached_tokens").GetInt32());

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await foreach (EventMessage m in events.ReadAllAsync(timeout.Token))
        {
            KvEvent e = KvEventJson.Deserialize(m.Payload.Span);
            Assert.Equal(workerRuntime.InstanceId, e.WorkerId);
            KvStoredData stored = Assert.IsType<KvStoredData>(e.Data);
            Assert.Equal(BlockHasher.SequenceHashes(prompt, engine.BlockSize)[0], stored.Blocks[0].BlockHash);
            break;
        }

        RequestPlaneException bad = await Assert.ThrowsAsync<RequestPlaneException>(() => CallAsync(client, Request([1, 99_999], 2)));
        Assert.Equal("invalid_request", bad.Code);
    }

    [Fact]
    public async Task PublishKvEvents_PublishFails_CountedAndLaterEventsStillPublished()
    {
        await using var cluster = new InProcessCluster();
        var flaky = new FlakyEventPlane(cluster.Events, failures: 2);
        await using DistributedRuntime workerRuntime = await ConnectAsync(cluster, flaky);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using IEventSubscription events = await frontend.Events.SubscribeAsync(Address.EventSubject(EngineWorker.KvEventsTopic));
        await using var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, WorkerId = workerRuntime.InstanceId });
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address);
        await using EndpointClient client = await frontend.CreateClientAsync(Address);

        // Each request stores new blocks: one KV event each. The first two publishes fail.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        for (int i = 0; worker.KvEventsPublished < 2; i++)
        {
            timeout.Token.ThrowIfCancellationRequested();
            await CallAsync(client, Request([.. Enumerable.Range(100 * i, 40)], 2));
        }

        Assert.Equal(2, worker.PublishFailures);
        await foreach (EventMessage m in events.ReadAllAsync(timeout.Token))
        {
            // The first event that arrives is one published after the failures: the publisher kept going.
            Assert.True(KvEventJson.Deserialize(m.Payload.Span).EventId > 2);
            break;
        }
    }

    [Fact]
    public async Task PublishKvEvents_EventPlaneSlowerThanEngine_OldestDroppedAndCounted()
    {
        await using var cluster = new InProcessCluster();
        var stalled = new FlakyEventPlane(cluster.Events, failures: 0);
        await using DistributedRuntime workerRuntime = await ConnectAsync(cluster, stalled);
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, WorkerId = workerRuntime.InstanceId });
        stalled.Hold();
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, Address, EngineWorkerOptions.Default with { KvEventBufferCapacity = 2 });
        await using EndpointClient client = await frontend.CreateClientAsync(Address);

        // The publisher waits on its first event; two more fit in the buffer; the rest push the oldest out.
        for (int i = 0; i < 6; i++)
        {
            await CallAsync(client, Request([.. Enumerable.Range(100 * i, 40)], 2));
        }

        Assert.True(worker.KvEventsDropped >= 3, $"{worker.KvEventsDropped} dropped");
        stalled.Release();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while ((ulong)(worker.KvEventsPublished + worker.KvEventsDropped) < engine.KvEvents!.LastEventId)
        {
            await Task.Delay(10, timeout.Token);
        }

        Assert.Equal(0, worker.PublishFailures);
    }

    /// <summary>A runtime on <paramref name="cluster"/> that publishes its events through <paramref name="events"/>.</summary>
    private static async Task<DistributedRuntime> ConnectAsync(InProcessCluster cluster, IEventPlane events)
    {
        var discovery = new InMemoryDiscovery(cluster.Store);
        await discovery.StartAsync();
        return new DistributedRuntime(discovery, cluster.Requests, events, ownsPlanes: false, onDispose: null);
    }

    /// <summary>An event plane over a real one whose first publishes fail, or that holds publishes until released.</summary>
    private sealed class FlakyEventPlane(IEventPlane inner, int failures) : IEventPlane
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _failures = failures;
        private bool _held;

        public string Name => inner.Name;

        public void Hold() => _held = true;

        public void Release() => _released.TrySetResult();

        public async ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
        {
            if (subject.EndsWith(EngineWorker.KvEventsTopic, StringComparison.Ordinal))
            {
                if (_held)
                {
                    await _released.Task.WaitAsync(cancellationToken);
                }

                if (Interlocked.Decrement(ref _failures) >= 0)
                {
                    throw new IOException("the event plane is down");
                }
            }

            await inner.PublishAsync(subject, payload, cancellationToken);
        }

        public Task<IEventSubscription> SubscribeAsync(string subject, CancellationToken cancellationToken = default) => inner.SubscribeAsync(subject, cancellationToken);

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

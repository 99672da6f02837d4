using System.Collections.Concurrent;
using System.Text.Json;
using Dynamo.Components.Processing;
using Dynamo.Components.Registry;
using Dynamo.Components.Workers;
using Dynamo.Frontend;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.Discovery;
using Dynamo.Tests.Frontend;
using Dynamo.Tests.Runtime;

namespace Dynamo.Tests.Components.Processing;

/// <summary>
/// The pipeline holds any <see cref="IWorkerRouter"/> to its contract and to nothing else: a router of the
/// test's own (as the next capabilities add routers) gets the model's candidates, its lease's worker serves,
/// the lease sees the first token, the completion and its disposal, a lease can change what the worker
/// receives, rejections become the documented HTTP errors, and a worker that fails before its first token
/// is replaced by routing again among the others. Run again through a Processor component
/// (<see cref="GenerationPipelineRoutingThroughProcessorTests"/>).
/// </summary>
public class GenerationPipelineRoutingTests
{
    private protected virtual bool ThroughProcessor => false;

    private async Task<FrontendHarness> StartAsync(RecordingRouter router) =>
        await FrontendHarness.StartAsync(FrontendOptions.Default with { Processing = ProcessorOptions.Default with { RouterFactory = _ => router } }, processor: ThroughProcessor);

    private static string Body(int promptTokens, int maxTokens, string extra = "") =>
        $"{{\"model\":\"{FrontendHarness.Model}\",\"prompt\":[{string.Join(',', Enumerable.Range(1, promptTokens))}],\"max_tokens\":{maxTokens}{extra}}}";

    [Fact]
    public async Task Request_AnyRouter_CandidatesAreTheInstancesAndTheLeaseLifecycleIsFollowed()
    {
        var router = new RecordingRouter(r => r.Candidates[^1]);
        await using FrontendHarness h = await StartAsync(router);
        TestWorker a = await h.AddWorkerAsync(FrontendHarness.Echo());
        TestWorker b = await h.AddWorkerAsync(FrontendHarness.Echo());
        long[] ids = [.. new[] { a.Runtime.InstanceId, b.Runtime.InstanceId }.Order()];
        await h.WaitForCandidatesAsync(2);

        var (status, body) = await h.PostJsonAsync("v1/completions", Body(5, 3));

        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        WorkerRouteRequest request = Assert.Single(router.Requests);
        Assert.Equal(ids, request.Candidates);
        Assert.Equal([1, 2, 3, 4, 5], request.TokenIds);
        RecordingLease lease = Assert.Single(router.Leases);
        Assert.Equal(ids[^1], lease.WorkerId);
        IEngine chosen = (ids[^1] == a.Runtime.InstanceId ? a : b).Engine, other = (ids[^1] == a.Runtime.InstanceId ? b : a).Engine;
        using (var published = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            while (chosen.Stats.RequestsFinished < 1)
            {
                await Task.Delay(10, published.Token);
            }
        }

        Assert.Equal(0, other.Stats.RequestsFinished);
        Assert.Equal(["first-token", "complete:0:3", "dispose"], lease.Calls);
    }

    [Fact]
    public async Task Request_LeasePreparesTheRequest_WorkerReceivesThePreparedOne()
    {
        var router = new RecordingRouter(r => r.Candidates[0], prepare: g => g with { Sampling = g.Sampling! with { MaxTokens = 2 } });
        await using FrontendHarness h = await StartAsync(router);
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, body) = await h.PostJsonAsync("v1/completions", Body(8, 6));

        Assert.Equal(200, status);
        Assert.Equal(2, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Theory]
    [InlineData(RouterRejection.QueueFull, 503, "router_overloaded", "7")]
    [InlineData(RouterRejection.NoWorker, 503, "no_instances", "7")]
    [InlineData(RouterRejection.QueueTimeout, 503, "router_queue_timeout", "7")]
    [InlineData(RouterRejection.InvalidRequest, 400, "invalid_value", null)]
    public async Task Request_RouterRejects_DocumentedError(RouterRejection reason, int expectedStatus, string code, string? retryAfter)
    {
        var router = new RecordingRouter(_ => throw new RouterRejectedException(reason, "refused by the test", TimeSpan.FromSeconds(7), "nvext"));
        await using FrontendHarness h = await StartAsync(router);
        await h.AddWorkerAsync(FrontendHarness.Echo());

        using HttpResponseMessage response = await h.PostAsync("v1/completions", Body(4, 2));

        Assert.Equal(expectedStatus, (int)response.StatusCode);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Contains($"\"code\":\"{code}\"", text, StringComparison.Ordinal);
        Assert.Equal(retryAfter, response.Headers.TryGetValues("Retry-After", out IEnumerable<string>? values) ? values.Single() : null);
        Assert.Equal(expectedStatus == 503 ? code : null, response.Headers.TryGetValues("X-Dynamo-Reject-Reason", out IEnumerable<string>? reasons) ? reasons.Single() : null);
        if (reason == RouterRejection.InvalidRequest)
        {
            Assert.Contains("\"param\":\"nvext\"", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Request_LeasedWorkerNeverAnswers_RoutedAgainAmongTheOthers()
    {
        var dead = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        var router = new RecordingRouter(r => dead.Task.IsCompleted && r.Candidates.Contains(dead.Task.Result) ? dead.Task.Result : r.Candidates[0]);
        await using FrontendHarness h = await StartAsync(router);
        TestWorker live = await h.AddWorkerAsync(FrontendHarness.Echo());
        TestWorker silent = await h.AddWorkerAsync(FrontendHarness.Echo(), serve: false);

        // Registered on the endpoint (so available to the client) under a subject nothing serves: it died.
        var address = new EndpointAddress("dynamo", "backend", "generate");
        var record = new InstanceRecord
        {
            Namespace = address.Namespace,
            Component = address.Component,
            Endpoint = address.Endpoint,
            InstanceId = silent.Runtime.InstanceId,
            Transport = "nats",
            Subject = address.InstanceSubject(silent.Runtime.InstanceId) + ".gone",
        };
        await silent.Runtime.Discovery.PutAsync(address.InstanceKey(silent.Runtime.InstanceId),
            JsonSerializer.SerializeToUtf8Bytes(record, RuntimeJsonContext.Default.InstanceRecord), DiscoveryPutOptions.LeasedKey);
        await h.WaitForCandidatesAsync(2);
        dead.SetResult(silent.Runtime.InstanceId);

        var (status, body) = await h.PostJsonAsync("v1/completions", Body(3, 2));

        Assert.Equal(200, status);
        Assert.Equal(2, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(2, router.Requests.Count);
        Assert.Contains(silent.Runtime.InstanceId, router.Requests.First().Candidates);
        Assert.Equal([live.Runtime.InstanceId], router.Requests.Last().Candidates);
        RecordingLease[] leases = [.. router.Leases];
        Assert.Equal(silent.Runtime.InstanceId, leases[0].WorkerId);
        Assert.Equal(["dispose"], leases[0].Calls);
        Assert.Equal(live.Runtime.InstanceId, leases[1].WorkerId);
        Assert.Equal(["first-token", "complete:0:2", "dispose"], leases[1].Calls);
    }

    [Fact]
    public async Task Request_PrefillOnlyWorker_503NoDecodeWorker_ThenTheAggregatedOneAloneIsTheCandidate()
    {
        var router = new RecordingRouter(r => r.Candidates[0]);
        await using FrontendHarness h = await StartAsync(router);
        TestWorker prefill = await h.AddWorkerAsync(FrontendHarness.Echo(), component: "prefill", role: "prefill");

        // Prefill workers never take a request themselves: alone, they leave the model unservable, said so.
        (int status, JsonElement body) = await h.PostJsonAsync("v1/completions", Body(3, 2));
        Assert.Equal(503, status);
        Assert.Equal("no_decode_worker", body.GetProperty("error").GetProperty("code").GetString());
        Assert.Empty(router.Requests);

        TestWorker aggregated = await h.AddWorkerAsync(FrontendHarness.Echo());
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            foreach (ModelRegistry registry in h.Processor is null ? [h.Server.Registry] : new[] { h.Server.Registry, h.Processor.Registry })
            {
                while (registry.TargetFor(FrontendHarness.Model, new HashSet<long>())?.Candidates.SequenceEqual([aggregated.Runtime.InstanceId]) != true)
                {
                    await Task.Delay(10, timeout.Token);
                }
            }
        }

        Assert.Equal(200, (await h.PostJsonAsync("v1/completions", Body(3, 2))).Status);
        Assert.Equal([aggregated.Runtime.InstanceId], router.Requests.Last().Candidates);
        using var published = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (aggregated.Engine.Stats.RequestsFinished < 1)
        {
            await Task.Delay(10, published.Token);
        }

        Assert.Equal(0, prefill.Engine.Stats.RequestsFinished);
    }

    [Fact]
    public async Task Request_LeasedWorkerOverloaded_RoutedAgainAmongTheOthers()
    {
        var full = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        var router = new RecordingRouter(r => full.Task.IsCompleted && r.Candidates.Contains(full.Task.Result) ? full.Task.Result : r.Candidates[0]);
        await using FrontendHarness h = await StartAsync(router);
        var held = new HeldEchoEngine();
        TestWorker busy = await h.AddWorkerAsync(held, options: EngineWorkerOptions.Default with { MaxWaitingRequests = 1 });
        TestWorker other = await h.AddWorkerAsync(FrontendHarness.Echo());
        await h.WaitForCandidatesAsync(2);
        full.SetResult(busy.Runtime.InstanceId);
        held.Hold();
        Task<HttpResponseMessage> waiting = h.PostAsync("v1/completions", Body(4, 2));
        await Eventually.WaitUntilAsync(() => busy.Worker!.WaitingRequests == 1, "a request waiting at the busy worker");

        var (status, body) = await h.PostJsonAsync("v1/completions", Body(5, 3));

        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(1, busy.Worker!.RequestsRefused);
        Assert.Equal(1, other.Worker!.RequestsTotal);
        Assert.Equal(3, router.Leases.Count);
        held.Release();
        using HttpResponseMessage first = await waiting;
        Assert.Equal(200, (int)first.StatusCode);
        Assert.All(router.Leases, l => Assert.Contains("dispose", l.Calls));
        Assert.Equal(0, busy.Worker.WaitingRequests);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Request_EveryWorkerOverloaded_503WorkersOverloaded(bool stream)
    {
        var router = new RecordingRouter(r => r.Candidates[0]);
        await using FrontendHarness h = await StartAsync(router);
        var engines = new[] { new HeldEchoEngine(), new HeldEchoEngine() };
        var workers = new List<TestWorker>();
        foreach (HeldEchoEngine engine in engines)
        {
            workers.Add(await h.AddWorkerAsync(engine, options: EngineWorkerOptions.Default with { MaxWaitingRequests = 1 }));
            engine.Hold();
        }

        await h.WaitForCandidatesAsync(2);
        var held = new List<Task<HttpResponseMessage>>();
        for (int i = 1; i <= 2; i++)
        {
            held.Add(h.PostAsync("v1/completions", Body(3, 2)));
            await Eventually.WaitUntilAsync(() => workers.Sum(w => w.Worker!.WaitingRequests) == i, $"{i} requests waiting at the workers");
        }

        await AdmissionTests.AssertRefusedAsync(h.PostAsync("v1/completions", Body(3, 2, stream ? ",\"stream\":true" : "")), 503, "service_unavailable_error", "workers_overloaded");

        Assert.Equal(3, workers.Sum(w => w.Worker!.RequestsRefused));
        Assert.Equal(1, await AdmissionTests.MetricAsync(h, "dynamo_frontend_rejected_requests_total{reason=\"workers_overloaded\"}"));
        foreach (HeldEchoEngine engine in engines)
        {
            engine.Release();
        }

        foreach (Task<HttpResponseMessage> pending in held)
        {
            using HttpResponseMessage response = await pending;
            Assert.Equal(200, (int)response.StatusCode);
        }
    }

    /// <summary>A router that leases the worker <paramref name="choose"/> names (or throws what it throws) and records everything.</summary>
    private sealed class RecordingRouter(Func<WorkerRouteRequest, long> choose, Func<GenerateRequest, GenerateRequest>? prepare = null) : IWorkerRouter
    {
        public ConcurrentQueue<WorkerRouteRequest> Requests { get; } = new();

        public ConcurrentQueue<RecordingLease> Leases { get; } = new();

        public string Name => "recording";

        public ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
        {
            Requests.Enqueue(request);
            var lease = new RecordingLease(choose(request), prepare);
            Leases.Enqueue(lease);
            return ValueTask.FromResult<WorkerLease>(lease);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    private sealed class RecordingLease(long workerId, Func<GenerateRequest, GenerateRequest>? prepare) : WorkerLease(workerId)
    {
        private readonly ConcurrentQueue<string> _calls = new();

        public IReadOnlyList<string> Calls => [.. _calls];

        public override void MarkFirstToken() => _calls.Enqueue("first-token");

        public override void Complete(int? actualCachedTokens = null, int? outputTokens = null) => _calls.Enqueue($"complete:{actualCachedTokens}:{outputTokens}");

        public override GenerateRequest Prepare(GenerateRequest request) => prepare?.Invoke(request) ?? request;

        public override ValueTask DisposeAsync()
        {
            _calls.Enqueue("dispose");
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>Every <see cref="GenerationPipelineRoutingTests"/> test with a Processor component running the pipeline.</summary>
public sealed class GenerationPipelineRoutingThroughProcessorTests : GenerationPipelineRoutingTests
{
    private protected override bool ThroughProcessor => true;
}

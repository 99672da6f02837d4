using Dynamo.Components.Processing;
using Dynamo.Components.Registry;
using Dynamo.Components.Routing;
using Dynamo.Frontend;
using Dynamo.Llm.Routing;
using Dynamo.Mocker;
using Dynamo.Runtime;

namespace Dynamo.Tests.Frontend;

/// <summary>--router-mode kv end to end: HTTP frontend, KV router fed by the workers' events, mocker engines.</summary>
public class FrontendKvRoutingTests
{
    /// <summary>Whether the frontend relays to a Processor component, which then routes (<see cref="FrontendKvRoutingThroughProcessorTests"/>).</summary>
    private protected virtual bool ThroughProcessor => false;

    private static FrontendOptions KvOptions { get; } = FrontendOptions.Default with { Processing = ProcessorOptions.Default with { RouterMode = "kv" } };

    private protected Task<FrontendHarness> StartAsync(FrontendOptions? options = null) => FrontendHarness.StartAsync(options, processor: ThroughProcessor);

    /// <summary>The metrics of the process that routes: the Processor component's when there is one, else the frontend's /metrics.</summary>
    private static Task<string> RouterMetricsAsync(FrontendHarness h) => h.RoutingMetricsAsync();

    /// <summary>The KV router that routes this harness's requests: the Processor component's when there is one, else the frontend's.</summary>
    private static async Task<KvRouter> LocalRouterAsync(FrontendHarness h)
    {
        ModelRegistry registry = h.Processor?.Registry ?? h.Server.Registry;
        var router = Assert.IsType<KvWorkerRouter>(registry.RouterOf(Backend));
        return (await router.LocalAsync()).Router;
    }

    /// <summary>
    /// Waits until <paramref name="router"/>'s own view (its KV index, fed by the workers' events) holds every
    /// full block of <paramref name="prefix"/> on one worker, and returns that worker.
    /// </summary>
    private static async Task<long> WaitForIndexedAsync(KvRouter router, int[] prefix)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (true)
        {
            foreach (var (worker, blocks) in router.IndexedOverlap(prefix))
            {
                if (blocks == prefix.Length / router.Options.BlockSize)
                {
                    return worker.WorkerId;
                }
            }

            await Task.Delay(10, timeout.Token);
        }
    }

    private static readonly EndpointAddress Backend = new("dynamo", "backend", "generate");

    private static string Body(int[] prompt, string extra = "") =>
        $"{{\"model\":\"{FrontendHarness.Model}\",\"prompt\":[{string.Join(',', prompt)}],\"max_tokens\":2,\"ignore_eos\":true{extra}}}";

    [Fact]
    public async Task KvMode_SharedPrefix_SecondRequestGoesToTheWorkerHoldingIt()
    {
        await using FrontendHarness h = await StartAsync(KvOptions);
        var engines = new List<MockerEngine>();
        var workers = new List<TestWorker>();
        for (int i = 0; i < 3; i++)
        {
            var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, ContextLength = 256, VocabSize = 500 });
            engines.Add(engine);
            workers.Add(await h.AddWorkerAsync(engine));
        }

        await h.Server.WaitForModelAsync(FrontendHarness.Model);
        int[] shared = [.. Enumerable.Range(0, 160).Select(i => 10 + (i * 7 % 300))];
        var (status, _) = await h.PostJsonAsync("v1/completions", Body([.. shared, 1, 2, 3]));
        Assert.Equal(200, status);
        int holder = engines.FindIndex(e => e.Stats.PromptTokens > 0);
        Assert.True(holder >= 0);

        // Once the first request's KV events reach the router (its own view, not a guess), every request
        // sharing the prefix goes to that worker and skips the shared blocks; no other worker computes it.
        Assert.Equal(workers[holder].Runtime.InstanceId, await WaitForIndexedAsync(await LocalRouterAsync(h), shared));
        for (int i = 0; i < 5; i++)
        {
            (status, _) = await h.PostJsonAsync("v1/completions", Body([.. shared, 9, i]));
            Assert.Equal(200, status);
        }

        Assert.Equal(0, engines.Where((e, i) => i != holder).Sum(e => e.Stats.PrefixHitTokens));
        Assert.Equal(5 * shared.Length, engines[holder].Stats.PrefixHitTokens);
        string metrics = await RouterMetricsAsync(h);
        Assert.Contains("dynamo_frontend_router_decisions_total{endpoint=\"dynamo.backend.generate\"}", metrics);
        Assert.Contains("dynamo_frontend_router_actual_hit_tokens_total{endpoint=\"dynamo.backend.generate\"}", metrics);
        Assert.Contains("dynamo_frontend_router_queue_depth{endpoint=\"dynamo.backend.generate\"} 0", metrics);
        Assert.Contains("dynamo_frontend_router_events_dropped_total{endpoint=\"dynamo.backend.generate\"} 0", metrics);
        Assert.Contains("dynamo_frontend_router_malformed_events_total{endpoint=\"dynamo.backend.generate\"} 0", metrics);
        string dumps = metrics.Split('\n').Single(l => l.StartsWith("dynamo_frontend_router_dumps_loaded_total{endpoint=\"dynamo.backend.generate\"} ", StringComparison.Ordinal));
        Assert.True(double.Parse(dumps[(dumps.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture) >= 3, dumps);
        foreach (TestWorker w in workers)
        {
            // Each worker's eviction estimate, next to its accuracy: 120 s before one, within [1 s, 600 s] after.
            string retention = metrics.Split('\n').Single(l => l.StartsWith(
                $"dynamo_frontend_router_worker_prefix_retention_seconds{{endpoint=\"dynamo.backend.generate\",worker_id=\"{EndpointAddress.FormatId(w.Runtime.InstanceId)}\",dp_rank=\"0\"}} ", StringComparison.Ordinal));
            Assert.InRange(double.Parse(retention[(retention.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture), 1, 600);
        }

        foreach (TestWorker w in workers)
        {
            await w.DisposeAsync();
        }
    }

    [Fact]
    public async Task KvMode_BadOverride_400NamingNvext()
    {
        await using FrontendHarness h = await StartAsync(KvOptions);
        await using TestWorker worker = await h.AddWorkerAsync(new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, ContextLength = 256, VocabSize = 500 }));
        await h.Server.WaitForModelAsync(FrontendHarness.Model);
        var (status, body) = await h.PostJsonAsync("v1/completions", Body([1, 2, 3], ",\"nvext\":{\"router_temperature\":-1}"));
        Assert.Equal(400, status);
        Assert.Contains("nvext", body.GetProperty("error").GetProperty("message").GetString());
        (status, _) = await h.PostJsonAsync("v1/completions", Body([1, 2, 3], ",\"nvext\":{\"router_temperature\":0.5,\"kv_overlap_score_weight\":2}"));
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task SharedRouterComponent_TwoFrontends_AffinityAcrossThemAndNoWorkerStarved()
    {
        await using FrontendHarness a = await StartAsync(KvOptions);
        var engines = new List<MockerEngine>();
        for (int i = 0; i < 3; i++)
        {
            var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 50, ContextLength = 256, VocabSize = 500 });
            engines.Add(engine);
            await a.AddWorkerAsync(engine);
        }

        await using DistributedRuntime routerRuntime = await a.Cluster.ConnectAsync();
        await using RouterServer router = await RouterServer.StartAsync(routerRuntime, new EndpointAddress("dynamo", "backend", "generate"));
        await using DistributedRuntime bRuntime = await a.Cluster.ConnectAsync();
        await using FrontendServer b = await FrontendServer.StartAsync(bRuntime, KvOptions with { Host = "127.0.0.1", HttpPort = 0 }, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        await b.WaitForModelAsync(FrontendHarness.Model);
        using var bHttp = new HttpClient { BaseAddress = b.BaseAddress };

        // 12 different prompts at once, half through each frontend: the shared router sees all the load.
        var requests = Enumerable.Range(0, 12).Select(i =>
        {
            int[] prompt = [.. Enumerable.Range(0, 64).Select(t => 10 + ((t * 13) + (i * 97)) % 400)];
            HttpClient http = i % 2 == 0 ? a.Http : bHttp;
            return http.PostAsync("v1/completions", new StringContent(Body(prompt).Replace("\"max_tokens\":2", "\"max_tokens\":40", StringComparison.Ordinal)));
        }).ToArray();
        foreach (HttpResponseMessage response in await Task.WhenAll(requests))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(12, router.Router.GetStats().Decisions);
        Assert.All(engines, e => Assert.True(e.Stats.RequestsFinished >= 2, $"a worker got {e.Stats.RequestsFinished} of 12 requests"));

        // A prefix served through frontend A is found again through frontend B, once the shared router's
        // own view holds it: that request goes to the holder and skips the prefix.
        int[] shared = [.. Enumerable.Range(0, 160).Select(t => 20 + (t * 7 % 300))];
        long hitsBefore = engines.Sum(e => e.Stats.PrefixHitTokens);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await a.Http.PostAsync("v1/completions", new StringContent(Body([.. shared, 1])))).StatusCode);
        await WaitForIndexedAsync(router.Router, shared);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await bHttp.PostAsync("v1/completions", new StringContent(Body([.. shared, 2])))).StatusCode);
        Assert.Equal(shared.Length, engines.Sum(e => e.Stats.PrefixHitTokens) - hitsBefore);
        Assert.Equal(0, router.Router.GetStats().InFlight);
    }
}

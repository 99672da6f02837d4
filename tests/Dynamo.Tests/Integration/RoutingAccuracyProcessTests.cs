using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Dynamo.Components.Routing;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Routing that checks itself, as processes over real nats-server and etcd: a mocker worker that loses every KV event
/// without a gap in their ids (<c>--kv-event-loss 1</c>: no event id tells the router), and a frontend routing with
/// <c>--router-mode kv</c>. The engine's actual cached tokens part from the router's prediction; the frontend resyncs
/// the worker's index from its dump, says so in a log line, and counts it on /metrics. The same through the shared router
/// component (<c>dynamo router</c>): the frontend carries each request's cached tokens back to it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class RoutingAccuracyProcessTests
{
    [Fact]
    public async Task WorkerLosingItsKvEvents_PredictionsMissTheCache_FrontendResyncsItsIndexLogsAndCounts()
    {
        await using LossyWorker d = await LossyWorker.StartAsync();
        (DynamoProcess frontend, HttpClient http) = await d.StartFrontendAsync("--router-accuracy-window", "4");

        // The frontend's KV router starts with its first request, and loads the worker's dump then.
        await WaitUntilAsync(async () => await InstancesAsync(http) == 1, "the frontend lists the worker");
        await CompleteAsync(http, Tokens(99, 20));
        await WaitUntilAsync(async () => await MetricAsync(http, "dynamo_frontend_router_dumps_loaded_total") >= 1, "the frontend loaded the worker's dump at its join");
        double indexedAtJoin = await MetricAsync(http, "dynamo_frontend_router_indexed_blocks");

        // Four prompts of four full blocks (and a partial one): the engine caches them; the router hears nothing of it.
        int[][] prompts = [.. Enumerable.Range(1, 4).Select(p => Tokens(p, (4 * 16) + 8))];
        foreach (int[] prompt in prompts)
        {
            await CompleteAsync(http, prompt);
        }

        Assert.Equal(indexedAtJoin, await MetricAsync(http, "dynamo_frontend_router_indexed_blocks"));
        Assert.Equal(0, await MetricAsync(http, "dynamo_frontend_router_accuracy_resyncs_total"));

        // Past the recent-prefix window (1 s: the router's own memory of a completed prompt), the same prompts again: the
        // engine finds each one cached, the router predicted nothing.
        var sincePhaseOne = Stopwatch.StartNew();
        await WaitUntilAsync(() => Task.FromResult(sincePhaseOne.Elapsed > TimeSpan.FromSeconds(1.5)), "the recent-prefix window passed");
        foreach (int[] prompt in prompts)
        {
            await CompleteAsync(http, prompt);
        }

        await WaitUntilAsync(async () => await MetricAsync(http, "dynamo_frontend_router_accuracy_resyncs_total") >= 1, "the frontend resynced the worker for accuracy");
        await frontend.WaitForLineAsync("resyncing its index from its dump");
        Assert.Contains("Routing accuracy on worker", frontend.Output, StringComparison.Ordinal);

        // The dump was the worker's real cache: the index now holds the four prompts' blocks it never heard of.
        await WaitUntilAsync(async () => await MetricAsync(http, "dynamo_frontend_router_indexed_blocks") >= indexedAtJoin + 16, "the index holds the dumped blocks");
        Assert.True(await MetricAsync(http, "dynamo_frontend_router_dumps_loaded_total") >= 2);
        string metrics = await http.GetStringAsync("metrics");
        Assert.Contains("dynamo_frontend_router_worker_accuracy{", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ThroughTheSharedRouter_CompletedRequestsCachedTokensReachIt_AndItResyncsAWorkerLosingItsKvEvents()
    {
        await using LossyWorker d = await LossyWorker.StartAsync();
        DynamoProcess router = await d.StartAsync(["router", "--router-accuracy-window", "4", "--lease-ttl", "3"], "router: routing");
        await using DistributedRuntime observer = await DistributedRuntime.ConnectAsync(new RuntimeOptions { NatsServer = d.Nats.Url, EtcdEndpoints = [d.Etcd.Endpoint] });
        await using EndpointClient views = await observer.CreateClientAsync(RouterServer.ViewAddressFor(new EndpointAddress("dynamo", "backend", "generate")));
        await views.WaitForInstancesAsync();
        (_, HttpClient http) = await d.StartFrontendAsync();
        await WaitUntilAsync(async () => await InstancesAsync(http) == 1, "the frontend lists the worker");
        await WaitUntilAsync(async () => (await RouterServer.ViewOfAsync(views)).Workers.Count == 1, "the router follows the worker");

        // Four prompts of four full blocks (and a partial one), through the router: the engine caches them, the router's
        // index hears nothing of it; each request's cached tokens (none yet) come back to the router at its end.
        int[][] prompts = [.. Enumerable.Range(1, 4).Select(p => Tokens(p, (4 * 16) + 8))];
        foreach (int[] prompt in prompts)
        {
            await CompleteAsync(http, prompt);
        }

        await WaitUntilAsync(async () => (await RouterServer.ViewOfAsync(views)).ReportedDecisions == 4, "the router heard the four requests' cached tokens");
        RouterView view = await RouterServer.ViewOfAsync(views);
        Assert.Equal((4L, 0L, 0L), (view.Decisions, view.ReportedActualHitTokens, view.AccuracyResyncs));

        // Past the recent-prefix window (1 s: the router's own memory of a completed prompt), the same prompts again: the
        // engine finds each one cached (64 tokens), the router predicted nothing, and its accuracy check resyncs the worker.
        var sincePhaseOne = Stopwatch.StartNew();
        await WaitUntilAsync(() => Task.FromResult(sincePhaseOne.Elapsed > TimeSpan.FromSeconds(1.5)), "the recent-prefix window passed");
        foreach (int[] prompt in prompts)
        {
            await CompleteAsync(http, prompt);
        }

        await WaitUntilAsync(
            async () => await RouterServer.ViewOfAsync(views) is { AccuracyResyncs: >= 1, ReportedDecisions: 8 },
            "the router heard the eight requests' cached tokens and resynced the worker for accuracy");
        await router.WaitForLineAsync("resyncing its index from its dump");
        Assert.Equal(4 * 64, (await RouterServer.ViewOfAsync(views)).ReportedActualHitTokens);
        Assert.Equal(0, await MetricAsync(http, "dynamo_frontend_router_accuracy_resyncs_total"));
    }

    private static async Task<int> InstancesAsync(HttpClient http)
    {
        using HttpResponseMessage health = await http.GetAsync("health");
        JsonElement root = JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement;
        return root.TryGetProperty("models", out JsonElement models) ? models.EnumerateArray().Sum(m => m.GetProperty("instances").GetArrayLength()) : 0;
    }

    private static int[] Tokens(int seed, int count) => [.. Enumerable.Range(0, count).Select(i => 10 + (((seed * 7919) + (i * 31)) % 500))];

    private static async Task CompleteAsync(HttpClient http, int[] tokens)
    {
        string body = $$"""{"model":"tiny","prompt":[{{string.Join(',', tokens)}}],"max_tokens":2,"ignore_eos":true,"temperature":0}""";
        using HttpResponseMessage response = await http.PostAsync("v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"HTTP {(int)response.StatusCode}: {text}");
        Assert.Equal(2, JsonDocument.Parse(text).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    /// <summary>The frontend's one sample of <paramref name="name"/> (one endpoint: one series; 0 before the router starts).</summary>
    private static async Task<double> MetricAsync(HttpClient http, string name) => PrometheusText.Value(await http.GetStringAsync("metrics"), name);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, double seconds = 120)
    {
        DateTime until = DateTime.UtcNow.AddSeconds(seconds);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < until, $"timed out waiting until {what}");
            await Task.Delay(50);
        }
    }

    /// <summary>nats-server, etcd and a mocker worker that loses every KV event without a gap in their ids; the processes started on them.</summary>
    private sealed class LossyWorker : IAsyncDisposable
    {
        private readonly List<DynamoProcess> _processes = [];
        private readonly List<HttpClient> _clients = [];
        private readonly Dictionary<string, string> _env;

        private LossyWorker(NatsServer nats, EtcdServer etcd)
        {
            Nats = nats;
            Etcd = etcd;
            _env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
        }

        public NatsServer Nats { get; }

        public EtcdServer Etcd { get; }

        public static async Task<LossyWorker> StartAsync()
        {
            var d = new LossyWorker(await NatsServer.StartAsync(), await EtcdServer.StartAsync());
            await d.StartAsync(
                ["worker", "--engine", "mocker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--speedup-ratio", "10", "--kv-event-loss", "1"],
                "serving dynamo.backend.generate");
            return d;
        }

        public async Task<DynamoProcess> StartAsync(string[] args, string ready)
        {
            DynamoProcess process = DynamoProcess.Start(args, _env);
            _processes.Add(process);
            await process.WaitForLineAsync(ready, 60);
            return process;
        }

        /// <summary>A frontend routing with <c>--router-mode kv</c> (and <paramref name="flags"/>), and a client of its HTTP port.</summary>
        public async Task<(DynamoProcess Frontend, HttpClient Http)> StartFrontendAsync(params string[] flags)
        {
            int port = LoopbackServers.FreePort();
            DynamoProcess frontend = await StartAsync(
                ["frontend", "--http-port", port.ToString(CultureInfo.InvariantCulture), "--http-host", "127.0.0.1", "--router-mode", "kv", .. flags], "frontend: listening");
            var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) };
            _clients.Add(http);
            return (frontend, http);
        }

        public async ValueTask DisposeAsync()
        {
            _clients.ForEach(c => c.Dispose());
            for (int i = _processes.Count - 1; i >= 0; i--)
            {
                await _processes[i].DisposeAsync();
            }

            await Etcd.DisposeAsync();
            await Nats.DisposeAsync();
        }
    }
}

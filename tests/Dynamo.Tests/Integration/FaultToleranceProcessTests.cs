using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Components.Routing;
using Dynamo.Runtime;
using Dynamo.Tests.Frontend;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Runtime;
using Xunit.Abstractions;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Nothing lost, end to end: a frontend and mocker workers as processes over real nats-server and etcd (and
/// Processor components between them), a steady load of streaming chat requests, and a worker or a processor
/// killed (SIGKILL) or every worker restarted in turn (SIGTERM: drain, then a replacement), the router component or
/// the frontend itself terminated (SIGTERM: drain). Every request completes with the text of a quiet run (the
/// mockers' tokens are a function of the request, so a migrated stream must continue exactly), none fails.
/// </summary>
[Trait("Category", "Slow")]
public sealed class FaultToleranceProcessTests(ITestOutputHelper output)
{
    private const int MaxTokens = 150;

    [Fact]
    public async Task KillNine_OneOfThreeWorkersUnderStreamingLoad_NoRequestFailsAndEveryTextIsIntact()
    {
        await using Deployment d = await Deployment.StartAsync(workers: 3, drainSeconds: 30);
        await using Load load = await Load.StartAsync(d.Http, clients: 6);
        await load.WaitForCompletedAsync(6);

        d.Workers[0].Kill();
        long atKill = load.Completed;
        await load.WaitForCompletedAsync(atKill + 12);
        Report report = await load.StopAsync();

        Assert.Empty(report.Failures);
        Assert.True(report.Completed >= 18);
        Assert.True(await MigrationsAsync(d.Http) >= 1, "the killed worker had streams in flight: at least one migration");
    }

    [Fact]
    public async Task KillNine_OneOfTwoProcessorsUnderStreamingLoad_NoRequestFailsAndEveryTextIsIntact()
    {
        await using Deployment d = await Deployment.StartAsync(workers: 1, drainSeconds: 30, processors: 2);
        await using Load load = await Load.StartAsync(d.Http, clients: 6);
        await load.WaitForCompletedAsync(6);

        // Killed while streams go through it: its in-flight gauge says so.
        (DynamoProcess victim, int statusPort) = d.Processors[0];
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            while (await PrometheusText.ScrapeAsync(statusPort, "dynamo_processor_inflight_requests") < 2)
            {
                await Task.Delay(20, timeout.Token);
            }
        }

        victim.Kill();
        long atKill = load.Completed;
        await load.WaitForCompletedAsync(atKill + 12);
        Report report = await load.StopAsync();

        Assert.Empty(report.Failures);
        Assert.True(report.Completed >= 18);
        Assert.True(await MigrationsAsync(d.Http, "processor") >= 1, "the killed processor had streams in flight: at least one migration");
        Assert.Contains("moved from processor", d.Frontend.Output, StringComparison.Ordinal);
        output.WriteLine($"{report.Completed} streams completed; {await MigrationsAsync(d.Http, "processor")} moved off the killed processor:");
        output.WriteLine(string.Join('\n', d.Frontend.Output.Split('\n').Where(l => l.Contains("moved from processor", StringComparison.Ordinal))));
    }

    [Fact]
    public async Task RollingRestart_EveryWorkerTerminatedInTurnUnderStreamingLoad_NoRequestFailsAndEachExitsZero()
    {
        // A 1 s drain: streams longer than that move to the other worker, shorter ones finish where they are.
        await using Deployment d = await Deployment.StartAsync(workers: 2, drainSeconds: 1);
        await using Load load = await Load.StartAsync(d.Http, clients: 6);
        await load.WaitForCompletedAsync(6);

        for (int i = 0; i < 2; i++)
        {
            DynamoProcess old = d.Workers[i];
            old.Terminate();
            Assert.Equal(0, await old.WaitForExitAsync(60));
            Assert.Contains("draining", old.Output, StringComparison.Ordinal);
            await old.DisposeAsync();
            d.Workers[i] = await d.StartWorkerAsync();
            await d.WaitForInstancesAsync(2);
            long now = load.Completed;
            await load.WaitForCompletedAsync(now + 6);
        }

        Report report = await load.StopAsync();
        Assert.Empty(report.Failures);
        Assert.True(report.Completed >= 18);
        output.WriteLine($"{report.Completed} streams completed; {await MigrationsAsync(d.Http)} moved off a draining worker after its 1 s drain");
    }

    [Fact]
    public async Task FrontendTerminated_StreamLongerThanTheDefaultDrain_FinishesWithinItsShutdownDrainTimeoutAndExitsZero()
    {
        // 80 ms a step (speedup 0.1): the 150-token stream takes 12 s, far more than the 5 s default drain.
        await using Deployment d = await Deployment.StartAsync(workers: 1, drainSeconds: 30, frontendArgs: ["--shutdown-drain-timeout", "120"], speedupRatio: 0.1);
        Task<(string? Text, string? Failure)> stream = StreamAsync(d.Http, 0, CancellationToken.None);
        double tokens;
        while ((tokens = await MetricAsync(d.Http, "dynamo_frontend_output_tokens_total")) < 5)
        {
            Assert.False(stream.IsCompleted, "the stream ended before its fifth token");
            await Task.Delay(20);
        }

        d.Frontend.Terminate();
        (string? text, string? failure) = await stream;

        Assert.True(failure is null, failure);
        Assert.False(string.IsNullOrEmpty(text));
        Assert.True((MaxTokens - tokens) * 0.080 > 5, $"{tokens} tokens out at SIGTERM: the rest took less than the default drain");
        Assert.Equal(0, await d.Frontend.WaitForExitAsync(60));
        Assert.Contains("frontend: shutting down: no new requests; those in flight get up to 120 s to finish (a second signal stops at once)", d.Frontend.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FrontendTerminatedTwice_SecondSignalEndsTheDrainAtOnce_StreamGetsShuttingDownAndExitZero()
    {
        // The same 12 s stream and a 120 s drain: the second SIGTERM ends the drain, the stream gets the shutting_down error.
        await using Deployment d = await Deployment.StartAsync(workers: 1, drainSeconds: 30, frontendArgs: ["--shutdown-drain-timeout", "120"], speedupRatio: 0.1);
        Task<(string? Text, string? Failure)> stream = StreamAsync(d.Http, 0, CancellationToken.None);
        while (await MetricAsync(d.Http, "dynamo_frontend_output_tokens_total") < 5)
        {
            Assert.False(stream.IsCompleted, "the stream ended before its fifth token");
            await Task.Delay(20);
        }

        d.Frontend.Terminate();
        await d.Frontend.WaitForLineAsync("a second signal stops at once");
        d.Frontend.Terminate();
        (string? text, string? failure) = await stream.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Null(text);
        Assert.Contains("shutting_down", failure, StringComparison.Ordinal);
        Assert.Equal(0, await d.Frontend.WaitForExitAsync(60));
        Assert.Contains("frontend: stopping at once (second signal)", d.Frontend.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(60)]
    [InlineData(0)]
    public async Task RouterTerminated_StreamsRoutedThroughIt_EveryStreamFinishesItLeavesDiscoveryAndExitsZero(int drainSeconds)
    {
        // With time to drain, the route streams end with their requests; with none, the router closes them and the
        // requests, already at their workers, finish anyway. Either way the frontend routes by itself afterwards.
        await using Deployment d = await Deployment.StartAsync(workers: 2, drainSeconds: 30, frontendArgs: ["--router-mode", "kv"]);
        await using DistributedRuntime observer = await DistributedRuntime.ConnectAsync(new RuntimeOptions { NatsServer = d.Nats.Url, EtcdEndpoints = [d.Etcd.Endpoint] });
        await using EndpointClient routers = await observer.CreateClientAsync(RouterServer.AddressFor(new EndpointAddress("dynamo", "backend", "generate")));
        string drain = drainSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using DynamoProcess router = DynamoProcess.Start(["router", "--drain-timeout", drain], d.ProcessEnvironment);
        await router.WaitForLineAsync("router: routing");
        await routers.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(30));
        await using Load load = await Load.StartAsync(d.Http, clients: 6);
        await load.WaitForCompletedAsync(6);

        router.Terminate();
        Assert.Equal(0, await router.WaitForExitAsync(90));
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => routers.Instances.Count == 0, 30);
        long atExit = load.Completed;
        await load.WaitForCompletedAsync(atExit + 6);
        Report report = await load.StopAsync();

        Assert.Empty(report.Failures);
        Match draining = Regex.Match(router.Output, $@"router: draining: frontends route elsewhere; (\d+) route streams in flight get up to {drain} s");
        Assert.True(draining.Success && int.Parse(draining.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 0, $"no route stream was in flight through the router at SIGTERM:\n{router.Output}");
        Assert.Contains(drainSeconds > 0 ? "router: drained; shutting down" : "route streams still open are closed", router.Output, StringComparison.Ordinal);
        output.WriteLine($"{draining.Groups[1].Value} route streams in flight at SIGTERM; {report.Completed} streams completed, the last 6 routed by the frontend itself");
    }

    /// <summary>The frontend's migrations (of <paramref name="reason"/>, or all).</summary>
    private static Task<double> MigrationsAsync(HttpClient http, string? reason = null) =>
        MetricAsync(http, "dynamo_frontend_migrations_total", reason is null ? null : $"reason=\"{reason}\"");

    /// <summary>The sum of a counter's series on the frontend's /metrics (those whose labels contain <paramref name="label"/>).</summary>
    private static async Task<double> MetricAsync(HttpClient http, string name, string? label = null)
    {
        string metrics = await http.GetStringAsync("metrics");
        return metrics.Split('\n')
            .Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) && (label is null || l.Contains(label, StringComparison.Ordinal)))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static string Body(int prompt) =>
        $$"""{"model":"tiny","messages":[{"role":"user","content":"story number {{prompt}} about the sea"}],"max_tokens":{{MaxTokens}},"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true},"temperature":0}""";

    /// <summary>One streamed answer: its text, or why it failed.</summary>
    private static async Task<(string? Text, string? Failure)> StreamAsync(HttpClient http, int prompt, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(Body(prompt), Encoding.UTF8, "application/json") };
        using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        Sse sse = await Sse.ReadAsync(response, cancellationToken);
        if (sse.Status != 200)
        {
            return (null, $"HTTP {sse.Status}: {string.Join(' ', sse.Data)}");
        }

        if (sse.Data.Count == 0 || sse.Data[^1] != "[DONE]")
        {
            return (null, $"no [DONE]: {string.Join(" | ", sse.Data.TakeLast(2))}");
        }

        var text = new StringBuilder();
        int roles = 0;
        int completion = -1;
        foreach (string data in sse.Data.Take(sse.Data.Count - 1))
        {
            JsonElement e = JsonDocument.Parse(data).RootElement;
            if (e.TryGetProperty("error", out JsonElement error))
            {
                return (null, $"error event: {error.GetRawText()}");
            }

            if (e.TryGetProperty("usage", out JsonElement usage) && usage.ValueKind == JsonValueKind.Object)
            {
                completion = usage.GetProperty("completion_tokens").GetInt32();
            }

            foreach (JsonElement choice in e.GetProperty("choices").EnumerateArray())
            {
                JsonElement delta = choice.GetProperty("delta");
                roles += delta.TryGetProperty("role", out _) ? 1 : 0;
                if (delta.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String)
                {
                    text.Append(content.GetString());
                }
            }
        }

        return roles != 1 ? (null, $"{roles} role chunks")
            : completion != MaxTokens ? (null, $"{completion} completion tokens")
            : (text.ToString(), null);
    }

    private sealed record Report(long Completed, IReadOnlyList<string> Failures);

    /// <summary>Clients that each stream one request after another (prompts cycling over 12) until stopped.</summary>
    private sealed class Load : IAsyncDisposable
    {
        private readonly HttpClient _http;
        private readonly CancellationTokenSource _stop = new();
        private readonly ConcurrentDictionary<int, string> _reference = new();
        private readonly ConcurrentQueue<string> _failures = new();
        private Task[] _clients = [];
        private long _completed;

        private Load(HttpClient http) => _http = http;

        public long Completed => Interlocked.Read(ref _completed);

        public static async Task<Load> StartAsync(HttpClient http, int clients)
        {
            var load = new Load(http);

            // The reference texts, from a quiet deployment.
            for (int p = 0; p < 12; p++)
            {
                (string? text, string? failure) = await StreamAsync(http, p, CancellationToken.None);
                Assert.True(failure is null, failure);
                load._reference[p] = text!;
            }

            load._clients = [.. Enumerable.Range(0, clients).Select(c => Task.Run(() => load.RunAsync(c)))];
            return load;
        }

        public async Task WaitForCompletedAsync(long count)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            while (Completed < count)
            {
                Assert.True(_failures.IsEmpty, string.Join("\n", _failures));
                await Task.Delay(50, timeout.Token);
            }
        }

        public async Task<Report> StopAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_clients);
            return new Report(Completed, [.. _failures]);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_clients).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _stop.Dispose();
        }

        private async Task RunAsync(int client)
        {
            for (int i = 0; !_stop.IsCancellationRequested; i++)
            {
                int prompt = (client * 5 + i) % 12;
                try
                {
                    // A request started is seen to its end, even when the load is being stopped.
                    (string? text, string? failure) = await StreamAsync(_http, prompt, CancellationToken.None);
                    if (failure is null && text != _reference[prompt])
                    {
                        failure = $"text differs from the quiet run's:\n{text}\n{_reference[prompt]}";
                    }

                    if (failure is not null)
                    {
                        _failures.Enqueue($"client {client} prompt {prompt}: {failure}");
                    }
                    else
                    {
                        Interlocked.Increment(ref _completed);
                    }
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                    _failures.Enqueue($"client {client} prompt {prompt}: {e.GetType().Name}: {e.Message}");
                }
            }
        }
    }

    /// <summary>
    /// nats-server, etcd, a frontend, mocker workers (8 ms a step at speedup 1: a 150-token stream takes over a
    /// second) and Processor components (each <c>serve --service-name Processor</c> with a status port), which the
    /// frontend relays to.
    /// </summary>
    private sealed class Deployment : IAsyncDisposable
    {
        private readonly int _drainSeconds;
        private readonly double _speedupRatio;

        private Deployment(NatsServer nats, EtcdServer etcd, DynamoProcess frontend, HttpClient http, int drainSeconds, double speedupRatio)
        {
            Nats = nats;
            Etcd = etcd;
            Frontend = frontend;
            Http = http;
            _drainSeconds = drainSeconds;
            _speedupRatio = speedupRatio;
            ProcessEnvironment = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
        }

        /// <summary>NATS_SERVER and ETCD_ENDPOINTS, for more processes of this deployment.</summary>
        public Dictionary<string, string> ProcessEnvironment { get; }

        public NatsServer Nats { get; }

        public EtcdServer Etcd { get; }

        public DynamoProcess Frontend { get; }

        public HttpClient Http { get; }

        public List<DynamoProcess> Workers { get; } = [];

        public List<(DynamoProcess Process, int StatusPort)> Processors { get; } = [];

        public static async Task<Deployment> StartAsync(int workers, int drainSeconds, int processors = 0, string[]? frontendArgs = null, double speedupRatio = 1)
        {
            NatsServer nats = await NatsServer.StartAsync();
            EtcdServer etcd = await EtcdServer.StartAsync();
            int port = FreePort();
            DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--http-host", "127.0.0.1", .. frontendArgs ?? []],
                new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint });
            var d = new Deployment(nats, etcd, frontend, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) }, drainSeconds, speedupRatio);
            await frontend.WaitForLineAsync("frontend: listening");
            for (int i = 0; i < workers; i++)
            {
                d.Workers.Add(await d.StartWorkerAsync());
            }

            await d.WaitForInstancesAsync(workers);
            for (int i = 0; i < processors; i++)
            {
                d.Processors.Add(await d.StartProcessorAsync());
            }

            return d;
        }

        public async Task<(DynamoProcess Process, int StatusPort)> StartProcessorAsync()
        {
            int port = FreePort();
            string config = Path.Combine(Path.GetTempPath(), $"processor-{Guid.NewGuid():N}.yaml");
            await File.WriteAllTextAsync(config, $"Processor:\n  system-port: {port}\n  system-host: 127.0.0.1\n");
            DynamoProcess p = DynamoProcess.Start(["serve", "graphs.agg_router:Frontend", "-f", config, "--service-name", "Processor"],
                new Dictionary<string, string>(ProcessEnvironment) { ["DYNAMO_HOME"] = RepoPaths.Root });
            await p.WaitForLineAsync("serve: started Processor", 60);
            File.Delete(config);
            return (p, port);
        }

        public async Task<DynamoProcess> StartWorkerAsync()
        {
            DynamoProcess w = DynamoProcess.Start(
                ["worker", "--engine", "mocker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--speedup-ratio", _speedupRatio.ToString(System.Globalization.CultureInfo.InvariantCulture), "--lease-ttl", "3",
                 "--drain-timeout", _drainSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)], ProcessEnvironment);
            await w.WaitForLineAsync("serving dynamo.backend.generate", 60);
            return w;
        }

        /// <summary>Waits until the frontend's /health lists <paramref name="count"/> worker instances.</summary>
        public async Task WaitForInstancesAsync(int count)
        {
            var until = DateTime.UtcNow.AddSeconds(60);
            while (true)
            {
                using HttpResponseMessage health = await Http.GetAsync("health");
                JsonElement root = JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement;
                int instances = root.TryGetProperty("models", out JsonElement models) ? models.EnumerateArray().Sum(m => m.GetProperty("instances").GetArrayLength()) : 0;
                if (instances == count)
                {
                    return;
                }

                Assert.True(DateTime.UtcNow < until, $"the frontend lists {instances} instances, not {count}");
                await Task.Delay(100);
            }
        }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            foreach (DynamoProcess w in Workers.Concat(Processors.Select(p => p.Process)))
            {
                await w.DisposeAsync();
            }

            await Frontend.DisposeAsync();
            await Etcd.DisposeAsync();
            await Nats.DisposeAsync();
        }
    }
}

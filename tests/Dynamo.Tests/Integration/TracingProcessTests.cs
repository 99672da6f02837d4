using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Llm.Tracing;
using Dynamo.Tests.Frontend;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Per-request traces across processes: `dynamo frontend` and `dynamo worker` (the built-in engine on the tiny chat
/// model) over real nats-server and etcd, exporting over OTLP/HTTP to a receiver this test runs. One chat completion
/// is one trace whose worker spans hang under the frontend's, through the W3C context in the NATS headers.
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class TracingProcessTests
{
    [GeneratedRegex(@"request chatcmpl-[0-9a-f]+ .* trace_id=([0-9a-f]{32}|-)")]
    private static partial Regex RequestLine();

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    /// <summary>The processes' environment: the servers, batches exported every 100 ms, and <paramref name="more"/>.</summary>
    private static Dictionary<string, string> Env(NatsServer nats, EtcdServer etcd, params (string Name, string Value)[] more)
    {
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint, ["OTEL_BSP_SCHEDULE_DELAY"] = "100" };
        foreach ((string name, string value) in more)
        {
            env[name] = value;
        }

        return env;
    }

    private sealed record Deployment(DynamoProcess Frontend, DynamoProcess Worker, HttpClient Http) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            await Worker.DisposeAsync();
            await Frontend.DisposeAsync();
        }
    }

    private static async Task<Deployment> StartAsync(Dictionary<string, string> env, IReadOnlyDictionary<string, string> frontendEnv, string[] frontendFlags, IReadOnlyDictionary<string, string> workerEnv)
    {
        int port = FreePort();
        DynamoProcess frontend = DynamoProcess.Start(
            ["frontend", "--http-port", port.ToString(), "--http-host", "127.0.0.1", "--router-mode", "kv", .. frontendFlags], new Dictionary<string, string>(env.Concat(frontendEnv)));
        DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--model", FrontendHarness.TinyChatModel.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1"], new Dictionary<string, string>(env.Concat(workerEnv)));
        var deployment = new Deployment(frontend, worker, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) });
        await frontend.WaitForLineAsync("frontend: listening", 120);
        await worker.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await WaitForInstancesAsync(deployment.Http, 1, frontend, worker);
        return deployment;
    }

    private static async Task<string> ChatAsync(HttpClient http, int maxTokens, string content = "Hello there", string model = "tiny")
    {
        string body = $"{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}],\"max_tokens\":{maxTokens},\"ignore_eos\":true}}";
        using HttpResponseMessage response = await http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    /// <summary>The trace id on the frontend's log line of request <paramref name="id"/> (waiting for the line: it is written as the response ends).</summary>
    private static async Task<string> TraceIdOfAsync(DynamoProcess frontend, string id)
    {
        await frontend.WaitForLineAsync($"request {id} ", 30);
        string line = frontend.Output.Split('\n').Single(l => l.Contains($"request {id} ", StringComparison.Ordinal));
        Match m = RequestLine().Match(line);
        Assert.True(m.Success, line);
        return m.Groups[1].Value;
    }

    /// <summary>The worker's line of the request of trace <paramref name="trace"/> (waiting for it: it is written as the request ends).</summary>
    private static async Task<string> WorkerLineAsync(DynamoProcess worker, string trace)
    {
        string needle = $" trace_id={trace}";
        await worker.WaitForLineAsync(needle, 30);
        return worker.Output.Split('\n').First(l => l.Contains(needle, StringComparison.Ordinal) && l.Contains(" request ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ChatCompletion_FrontendAndWorkerProcesses_OneTraceWithTheWorkersSpansUnderTheFrontends()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using OtlpReceiver receiver = OtlpReceiver.Start();
        Dictionary<string, string> env = Env(nats, etcd, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"));

        // The frontend is configured by its flag, the worker by OpenTelemetry's variable.
        await using Deployment d = await StartAsync(env, new Dictionary<string, string>(), ["--otlp-endpoint", receiver.Endpoint],
            new Dictionary<string, string> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint });
        Assert.Contains("frontend: tracing requests: spans of service dynamo-frontend", d.Frontend.Output);
        Assert.Contains("worker: tracing requests: spans of service dynamo-worker", d.Worker.Output);

        string id = await ChatAsync(d.Http, 4);
        string trace = await TraceIdOfAsync(d.Frontend, id);
        Assert.NotEqual("-", trace);

        // The worker's line of the request names the same trace.
        string served = await WorkerLineAsync(d.Worker, trace);
        Assert.Contains($"request {id}", served);
        Assert.Contains("tokens_out=4 ", served);

        string[] frontendSpans = [DynamoTracing.Spans.Frontend, DynamoTracing.Spans.Admission, DynamoTracing.Spans.Preprocess, DynamoTracing.Spans.Route, DynamoTracing.Spans.WorkerCall];
        string[] workerSpans = [DynamoTracing.Spans.Worker, DynamoTracing.Spans.Queue, DynamoTracing.Spans.Prefill, DynamoTracing.Spans.Decode];
        OtlpSpan[] spans = [];
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!(frontendSpans.All(n => spans.Any(s => s.Service == "dynamo-frontend" && s.Name == n)) && workerSpans.All(n => spans.Any(s => s.Service == "dynamo-worker" && s.Name == n))
            && spans.Any(s => s.Scope == "Microsoft.AspNetCore")))
        {
            Assert.True(DateTime.UtcNow < until, $"trace {trace} never had every span; received: {string.Join(", ", spans.Select(s => $"{s.Service}/{s.Name}"))}\n{d.Frontend.Output}\n{d.Worker.Output}");
            await Task.Delay(50);
            spans = [.. receiver.Spans.Where(s => s.TraceId == trace)];
        }

        OtlpSpan One(string service, string name) => Assert.Single(spans, s => s.Service == service && s.Name == name);
        OtlpSpan http = Assert.Single(spans, s => s.Scope == "Microsoft.AspNetCore");
        Assert.Equal("dynamo-frontend", http.Service);
        Assert.Equal(2, http.Kind);
        OtlpSpan frontend = One("dynamo-frontend", DynamoTracing.Spans.Frontend);
        Assert.Equal(http.SpanId, frontend.ParentSpanId);
        Assert.Equal("Dynamo.Frontend", frontend.Scope);
        Assert.Equal(id, frontend.Attributes[DynamoTracing.Attributes.RequestId]);
        Assert.Equal("4", frontend.Attributes[DynamoTracing.Attributes.CompletionTokens]);
        foreach (string child in new[] { DynamoTracing.Spans.Admission, DynamoTracing.Spans.Preprocess, DynamoTracing.Spans.Route, DynamoTracing.Spans.WorkerCall })
        {
            Assert.Equal(frontend.SpanId, One("dynamo-frontend", child).ParentSpanId);
        }

        OtlpSpan route = One("dynamo-frontend", DynamoTracing.Spans.Route);
        OtlpSpan call = One("dynamo-frontend", DynamoTracing.Spans.WorkerCall);
        Assert.Equal(3, call.Kind);

        // Across the process boundary: the worker's server span is the child of the frontend's call, through NATS's headers.
        OtlpSpan worker = One("dynamo-worker", DynamoTracing.Spans.Worker);
        Assert.Equal(2, worker.Kind);
        Assert.Equal(call.SpanId, worker.ParentSpanId);
        Assert.Equal(route.Attributes[DynamoTracing.Attributes.WorkerId], worker.Attributes[DynamoTracing.Attributes.WorkerId]);
        Assert.Equal("kv", route.Attributes[DynamoTracing.Attributes.RouterMode]);
        Assert.True(route.Attributes.ContainsKey(DynamoTracing.Attributes.PredictedCachedTokens));
        foreach (string phase in new[] { DynamoTracing.Spans.Queue, DynamoTracing.Spans.Prefill, DynamoTracing.Spans.Decode })
        {
            OtlpSpan span = One("dynamo-worker", phase);
            Assert.Equal(worker.SpanId, span.ParentSpanId);
            Assert.Equal("Dynamo.Engine", span.Scope);
        }

        Assert.Equal("4", One("dynamo-worker", DynamoTracing.Spans.Decode).Attributes[DynamoTracing.Attributes.CompletionTokens]);
        Assert.Equal(One("dynamo-worker", DynamoTracing.Spans.Prefill).EndUnixNano, One("dynamo-worker", DynamoTracing.Spans.Decode).StartUnixNano);
    }

    [Fact]
    public async Task ChatCompletion_TracingNotConfiguredOrDisabled_NothingExportedAndServedAsBefore()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using OtlpReceiver receiver = OtlpReceiver.Start();
        Dictionary<string, string> env = Env(nats, etcd, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"));

        // The frontend has an endpoint but OTEL_SDK_DISABLED; the worker has none.
        await using Deployment d = await StartAsync(env,
            new Dictionary<string, string> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint, ["OTEL_SDK_DISABLED"] = "true" }, [], new Dictionary<string, string>());
        string id = await ChatAsync(d.Http, 3);
        Assert.Equal("-", await TraceIdOfAsync(d.Frontend, id));
        Assert.Contains($"request {id}", await WorkerLineAsync(d.Worker, "-"));

        // A clean stop flushes whatever a tracer would have batched: once both have exited, nothing can be on its way.
        d.Worker.Terminate();
        d.Frontend.Terminate();
        Assert.Equal(0, await d.Worker.WaitForExitAsync(60));
        Assert.Equal(0, await d.Frontend.WaitForExitAsync(60));
        Assert.DoesNotContain("tracing requests", d.Frontend.Output + d.Worker.Output);
        Assert.Equal(0, receiver.Requests);
    }

    [Fact]
    public async Task ChatCompletion_PrefilledRemotely_OneTraceAcrossFrontendDecodeAndPrefillWorkers()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using OtlpReceiver receiver = OtlpReceiver.Start();
        Dictionary<string, string> env = Env(nats, etcd, ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.Endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"));
        int port = FreePort();
        string[] worker = ["worker", "--model", FrontendHarness.TinyChatModel.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1"];
        await using DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", port.ToString(), "--http-host", "127.0.0.1", "--router-mode", "kv"], env);
        await using DynamoProcess decode = DynamoProcess.Start([.. worker, "--max-local-prefill-length", "8", "--max-prefill-queue-size", "100"], env);
        await using DynamoProcess prefill = DynamoProcess.Start([.. worker, "--is-prefill-worker"], env);
        await frontend.WaitForLineAsync("frontend: listening", 120);
        await decode.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await prefill.WaitForLineAsync("serving dynamo.prefill.generate", 120);
        Assert.Contains("worker: tracing requests: spans of service dynamo-prefill-worker", prefill.Output);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) };
        await WaitForInstancesAsync(http, 1, frontend, decode);

        // The frontend sends prompts to the prefill worker once it has seen its card: until then the decode worker prefills.
        string id, trace, served;
        var ready = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            id = await ChatAsync(http, 4, "Tell me a long story about a dragon who guards a library of forgotten books");
            trace = await TraceIdOfAsync(frontend, id);
            served = await WorkerLineAsync(decode, trace);
            if (served.Contains(" prefill=remote:", StringComparison.Ordinal))
            {
                break;
            }

            Assert.True(DateTime.UtcNow < ready, $"no remote prefill within 60 s:\n{decode.Output}\n{prefill.Output}");
        }

        // The prefill worker's line names the same trace.
        string prefilled = await WorkerLineAsync(prefill, trace);
        Assert.Contains(" prefilled_for=", prefilled);

        (string Service, string Name)[] expected =
        [
            ("dynamo-frontend", DynamoTracing.Spans.Frontend), ("dynamo-frontend", DynamoTracing.Spans.Route), ("dynamo-frontend", DynamoTracing.Spans.WorkerCall),
            ("dynamo-worker", DynamoTracing.Spans.Worker), ("dynamo-worker", DynamoTracing.Spans.RemotePrefill), ("dynamo-worker", DynamoTracing.Spans.Decode),
            ("dynamo-prefill-worker", DynamoTracing.Spans.Worker), ("dynamo-prefill-worker", DynamoTracing.Spans.Prefill), ("dynamo-prefill-worker", DynamoTracing.Spans.KvTransfer),
        ];
        OtlpSpan[] spans = await WholeTraceAsync(receiver.Spans, trace, expected, frontend, decode, prefill);

        OtlpSpan One(string service, string name) => Assert.Single(spans, s => s.Service == service && s.Name == name);
        OtlpSpan call = One("dynamo-frontend", DynamoTracing.Spans.WorkerCall);
        OtlpSpan decodeServed = One("dynamo-worker", DynamoTracing.Spans.Worker);
        Assert.Equal(call.SpanId, decodeServed.ParentSpanId);

        // The decode worker's leg is the client of the prefill worker's server span, whose children are its engine's prefill and its KV push.
        OtlpSpan leg = One("dynamo-worker", DynamoTracing.Spans.RemotePrefill);
        Assert.Equal(decodeServed.SpanId, leg.ParentSpanId);
        Assert.Equal(3, leg.Kind);
        OtlpSpan prefillServed = One("dynamo-prefill-worker", DynamoTracing.Spans.Worker);
        Assert.Equal(leg.SpanId, prefillServed.ParentSpanId);
        Assert.Equal(2, prefillServed.Kind);
        Assert.Equal(leg.Attributes[DynamoTracing.Attributes.PrefillWorkerId], prefillServed.Attributes[DynamoTracing.Attributes.WorkerId]);
        Assert.Equal(prefillServed.SpanId, One("dynamo-prefill-worker", DynamoTracing.Spans.Prefill).ParentSpanId);
        OtlpSpan transfer = One("dynamo-prefill-worker", DynamoTracing.Spans.KvTransfer);
        Assert.Equal(prefillServed.SpanId, transfer.ParentSpanId);
        Assert.Equal(decodeServed.Attributes[DynamoTracing.Attributes.WorkerId], transfer.Attributes[DynamoTracing.Attributes.DecodeWorkerId]);
        Assert.True(long.Parse(transfer.Attributes[DynamoTracing.Attributes.TransferBytes]) > 0, "the KV push moved no bytes");
        Assert.Equal(transfer.Attributes[DynamoTracing.Attributes.TransferTokens], leg.Attributes[DynamoTracing.Attributes.TransferTokens]);

        // The decode worker decodes under its own server span, after the leg.
        OtlpSpan decoded = One("dynamo-worker", DynamoTracing.Spans.Decode);
        Assert.Equal(decodeServed.SpanId, decoded.ParentSpanId);
        Assert.True(decoded.StartUnixNano >= leg.EndUnixNano, "decoding began before the remote prefill ended");
    }

    [Fact]
    public async Task ChatCompletion_RouterProcessOverGrpc_TheRoutersSpanUnderTheFrontendsRouteInOneTrace()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using OtlpGrpcReceiver receiver = await OtlpGrpcReceiver.StartAsync();

        // No OTEL_EXPORTER_OTLP_PROTOCOL: the exporter's default, grpc. The frontend by its flag, the others by the variable.
        Dictionary<string, string> env = Env(nats, etcd);
        Dictionary<string, string> exporting = Env(nats, etcd, ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.Endpoint));
        int port = FreePort();
        await using DynamoProcess router = DynamoProcess.Start(["router"], exporting);
        await router.WaitForLineAsync("router: routing", 120);
        await using DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--model", FrontendHarness.TinyChatModel.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1"], exporting);
        await using DynamoProcess frontend = DynamoProcess.Start(
            ["frontend", "--http-port", port.ToString(), "--http-host", "127.0.0.1", "--router-mode", "kv", "--otlp-endpoint", receiver.Endpoint], env);
        await worker.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await frontend.WaitForLineAsync("frontend: listening", 120);
        Assert.Contains("router: tracing requests: spans of service dynamo-router", router.Output);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) };
        await WaitForInstancesAsync(http, 1, frontend, worker);

        string trace = await RoutedByRouterAsync(http, receiver.Spans, "tiny", frontend, router, worker);

        (string Service, string Name)[] expected =
        [
            ("dynamo-frontend", DynamoTracing.Spans.Frontend), ("dynamo-frontend", DynamoTracing.Spans.Route), ("dynamo-frontend", DynamoTracing.Spans.WorkerCall),
            ("dynamo-router", DynamoTracing.Spans.RouterServe), ("dynamo-worker", DynamoTracing.Spans.Worker), ("dynamo-worker", DynamoTracing.Spans.Decode),
        ];
        OtlpSpan[] spans = await WholeTraceAsync(receiver.Spans, trace, expected, frontend, router, worker);
        Assert.All(receiver.Calls, c => Assert.Equal("HTTP/2 application/grpc", c));

        OtlpSpan One(string service, string name) => Assert.Single(spans, s => s.Service == service && s.Name == name);
        OtlpSpan route = One("dynamo-frontend", DynamoTracing.Spans.Route);
        OtlpSpan routed = One("dynamo-router", DynamoTracing.Spans.RouterServe);
        Assert.Equal(route.SpanId, routed.ParentSpanId);
        Assert.Equal(2, routed.Kind);
        Assert.Equal("Dynamo.Router", routed.Scope);
        Assert.Equal("kv", route.Attributes[DynamoTracing.Attributes.RouterMode]);
        Assert.Equal(One("dynamo-frontend", DynamoTracing.Spans.WorkerCall).SpanId, One("dynamo-worker", DynamoTracing.Spans.Worker).ParentSpanId);
        Assert.Equal(route.Attributes[DynamoTracing.Attributes.WorkerId], One("dynamo-worker", DynamoTracing.Spans.Worker).Attributes[DynamoTracing.Attributes.WorkerId]);
    }

    [Fact]
    public async Task ChatCompletion_ServeGraphComponentsAsProcesses_ProcessorAndRouterSpansInTheFrontendsTrace()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using OtlpReceiver receiver = OtlpReceiver.Start();
        Dictionary<string, string> env = Env(nats, etcd, ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.Endpoint), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), ("DYNAMO_HOME", RepoPaths.Root));
        int port = FreePort();
        string config = Path.Combine(Path.GetTempPath(), $"agg_router-traced-{Guid.NewGuid():N}.yaml");
        string text = await File.ReadAllTextAsync(Path.Combine(RepoPaths.Root, "configs", "agg_router.yaml"));
        await File.WriteAllTextAsync(config, text
            .Replace("port: 8000", $"port: {port}\n  host: 127.0.0.1", StringComparison.Ordinal)
            .Replace("kv-cache-memory: 67108864", "kv-cache-memory: 16000000\n  threads: 1", StringComparison.Ordinal)
            .Replace("workers: 2", "workers: 1", StringComparison.Ordinal));
        try
        {
            // The graph's four components, each its own process (serve --service-name), each its own service name.
            var processes = new List<DynamoProcess>();
            await using var stop = new ProcessesDisposer(processes);
            foreach (string component in new[] { "VllmWorker", "Router", "Processor", "Frontend" })
            {
                DynamoProcess p = DynamoProcess.Start(["serve", "graphs.agg_router:Frontend", "-f", config, "--service-name", component], env);
                processes.Add(p);
                await p.WaitForLineAsync($"serve: started {component}", 180);
                Assert.Contains($"tracing requests: spans of service dynamo-{component.ToLowerInvariant()}", p.Output);
            }

            DynamoProcess frontend = processes[^1];
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) };
            await WaitForInstancesAsync(http, 1, [.. processes]);

            string trace = await RoutedByRouterAsync(http, receiver.Spans, "dynamo-tiny", [.. Enumerable.Reverse(processes)]);

            (string Service, string Name)[] expected =
            [
                ("dynamo-frontend", DynamoTracing.Spans.Frontend), ("dynamo-processor", DynamoTracing.Spans.ProcessorServe), ("dynamo-processor", DynamoTracing.Spans.Preprocess),
                ("dynamo-processor", DynamoTracing.Spans.Route), ("dynamo-router", DynamoTracing.Spans.RouterServe), ("dynamo-processor", DynamoTracing.Spans.WorkerCall),
                ("dynamo-vllmworker", DynamoTracing.Spans.Worker), ("dynamo-vllmworker", DynamoTracing.Spans.Decode),
            ];
            OtlpSpan[] spans = await WholeTraceAsync(receiver.Spans, trace, expected, [.. processes]);

            OtlpSpan One(string service, string name) => Assert.Single(spans, s => s.Service == service && s.Name == name);
            OtlpSpan relayed = One("dynamo-processor", DynamoTracing.Spans.ProcessorServe);
            Assert.Equal(2, relayed.Kind);
            Assert.Equal("dynamo-frontend", Assert.Single(spans, s => s.SpanId == relayed.ParentSpanId).Service);
            foreach (string child in new[] { DynamoTracing.Spans.Preprocess, DynamoTracing.Spans.Route, DynamoTracing.Spans.WorkerCall })
            {
                Assert.Equal(relayed.SpanId, One("dynamo-processor", child).ParentSpanId);
            }

            Assert.Equal(One("dynamo-processor", DynamoTracing.Spans.Route).SpanId, One("dynamo-router", DynamoTracing.Spans.RouterServe).ParentSpanId);
            Assert.Equal(One("dynamo-processor", DynamoTracing.Spans.WorkerCall).SpanId, One("dynamo-vllmworker", DynamoTracing.Spans.Worker).ParentSpanId);
        }
        finally
        {
            File.Delete(config);
        }
    }

    /// <summary>Stops every process of a list (the last started first).</summary>
    private sealed class ProcessesDisposer(List<DynamoProcess> processes) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            for (int i = processes.Count - 1; i >= 0; i--)
            {
                await processes[i].DisposeAsync();
            }
        }
    }

    /// <summary>Waits until the frontend lists <paramref name="instances"/> workers of the model (/health answers 503 until it has seen one's card).</summary>
    private static async Task WaitForInstancesAsync(HttpClient http, int instances, params DynamoProcess[] processes)
    {
        var until = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            using HttpResponseMessage health = await http.GetAsync("health");
            if (health.IsSuccessStatusCode && JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement.GetProperty("models").EnumerateArray().Any(m => m.GetProperty("instances").GetArrayLength() >= instances))
            {
                return;
            }

            Assert.True(DateTime.UtcNow < until, $"the frontend never listed {instances} workers:\n{string.Join('\n', processes.Select(p => p.Output))}");
            await Task.Delay(100);
        }
    }

    /// <summary>
    /// The trace id of the first chat completion through <paramref name="processes"/>[0] (the frontend) that the Router
    /// component routed: until it knows the worker, requests are routed locally. Fails after 60 s.
    /// </summary>
    private static async Task<string> RoutedByRouterAsync(HttpClient http, IEnumerable<OtlpSpan> received, string model, params DynamoProcess[] processes)
    {
        var ready = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            string trace = await TraceIdOfAsync(processes[0], await ChatAsync(http, 2, model: model));
            if (await AnySpanAsync(received, s => s.TraceId == trace && s.Service == "dynamo-router", TimeSpan.FromSeconds(3)))
            {
                return trace;
            }

            Assert.True(DateTime.UtcNow < ready, $"the Router component routed no request within 60 s:\n{string.Join('\n', processes.Select(p => p.Output))}");
        }
    }

    /// <summary>Whether a span matching <paramref name="match"/> arrives within <paramref name="wait"/>.</summary>
    private static async Task<bool> AnySpanAsync(IEnumerable<OtlpSpan> received, Func<OtlpSpan, bool> match, TimeSpan wait)
    {
        var until = DateTime.UtcNow + wait;
        while (!received.Any(match))
        {
            if (DateTime.UtcNow >= until)
            {
                return false;
            }

            await Task.Delay(50);
        }

        return true;
    }

    /// <summary>
    /// The spans of <paramref name="trace"/> once every <paramref name="expected"/> (service, name) has arrived and every
    /// span's parent is in the trace too (one root: the frontend's HTTP span). Fails with what arrived after 60 s.
    /// </summary>
    private static async Task<OtlpSpan[]> WholeTraceAsync(IEnumerable<OtlpSpan> received, string trace, (string Service, string Name)[] expected, params DynamoProcess[] processes)
    {
        OtlpSpan[] spans = [];
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!(expected.All(e => spans.Any(s => s.Service == e.Service && s.Name == e.Name)) && spans.All(s => s.ParentSpanId.Length == 0 || spans.Any(p => p.SpanId == s.ParentSpanId))))
        {
            Assert.True(DateTime.UtcNow < until,
                $"trace {trace} never had every span with every parent; received: {string.Join(", ", spans.Select(s => $"{s.Service}/{s.Name}({s.SpanId}<-{s.ParentSpanId})"))}\n{string.Join('\n', processes.Select(p => p.Output))}");
            await Task.Delay(50);
            spans = [.. received.Where(s => s.TraceId == trace)];
        }

        OtlpSpan root = Assert.Single(spans, s => s.ParentSpanId.Length == 0);
        Assert.Equal(("dynamo-frontend", "Microsoft.AspNetCore"), (root.Service, root.Scope));
        return spans;
    }
}

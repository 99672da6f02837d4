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
        var until = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            // /health answers 503 until the frontend has seen the worker's card.
            using HttpResponseMessage health = await deployment.Http.GetAsync("health");
            if (health.IsSuccessStatusCode && JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement.GetProperty("models").EnumerateArray().Any(m => m.GetProperty("instances").GetArrayLength() > 0))
            {
                return deployment;
            }

            Assert.True(DateTime.UtcNow < until, $"the frontend never listed the worker:\n{frontend.Output}\n{worker.Output}");
            await Task.Delay(100);
        }
    }

    private static async Task<string> ChatAsync(HttpClient http, int maxTokens)
    {
        string body = $"{{\"model\":\"tiny\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello there\"}}],\"max_tokens\":{maxTokens},\"ignore_eos\":true}}";
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

    [Fact]
    public async Task ChatCompletion_FrontendAndWorkerProcesses_OneTraceWithTheWorkersSpansUnderTheFrontends()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await using OtlpReceiver receiver = OtlpReceiver.Start();
        var env = new Dictionary<string, string>
        {
            ["NATS_SERVER"] = nats.Url,
            ["ETCD_ENDPOINTS"] = etcd.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
        };

        // The frontend is configured by its flag, the worker by OpenTelemetry's variable.
        await using Deployment d = await StartAsync(env, new Dictionary<string, string>(), ["--otlp-endpoint", receiver.Endpoint],
            new Dictionary<string, string> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint });
        Assert.Contains("frontend: tracing requests: spans of service dynamo-frontend", d.Frontend.Output);
        Assert.Contains("worker: tracing requests: spans of service dynamo-worker", d.Worker.Output);

        string id = await ChatAsync(d.Http, 4);
        string trace = await TraceIdOfAsync(d.Frontend, id);
        Assert.NotEqual("-", trace);

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
        OtlpSpan served = One("dynamo-worker", DynamoTracing.Spans.Worker);
        Assert.Equal(2, served.Kind);
        Assert.Equal(call.SpanId, served.ParentSpanId);
        Assert.Equal(route.Attributes[DynamoTracing.Attributes.WorkerId], served.Attributes[DynamoTracing.Attributes.WorkerId]);
        Assert.Equal("kv", route.Attributes[DynamoTracing.Attributes.RouterMode]);
        Assert.True(route.Attributes.ContainsKey(DynamoTracing.Attributes.PredictedCachedTokens));
        foreach (string phase in new[] { DynamoTracing.Spans.Queue, DynamoTracing.Spans.Prefill, DynamoTracing.Spans.Decode })
        {
            OtlpSpan span = One("dynamo-worker", phase);
            Assert.Equal(served.SpanId, span.ParentSpanId);
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
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint, ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf", ["OTEL_BSP_SCHEDULE_DELAY"] = "100" };

        // The frontend has an endpoint but OTEL_SDK_DISABLED; the worker has none.
        await using Deployment d = await StartAsync(env,
            new Dictionary<string, string> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint, ["OTEL_SDK_DISABLED"] = "true" }, [], new Dictionary<string, string>());
        string id = await ChatAsync(d.Http, 3);
        Assert.Equal("-", await TraceIdOfAsync(d.Frontend, id));

        // A clean stop flushes whatever a tracer would have batched: once both have exited, nothing can be on its way.
        d.Worker.Terminate();
        d.Frontend.Terminate();
        Assert.Equal(0, await d.Worker.WaitForExitAsync(60));
        Assert.Equal(0, await d.Frontend.WaitForExitAsync(60));
        Assert.DoesNotContain("tracing requests", d.Frontend.Output + d.Worker.Output);
        Assert.Equal(0, receiver.Requests);
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Dynamo.Components.Processing;
using Dynamo.Frontend;
using Dynamo.Llm.Tracing;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Dynamo.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// Per-request traces in one process (what `dynamo run` composes: the frontend, the KV router and a worker on the
/// in-process planes): one chat completion is one trace, with the frontend's, the router's, the worker's and the
/// engine's spans in their parent-child structure, recorded by a real <see cref="ActivityListener"/>.
/// </summary>
public sealed class RequestTracingTests(ITestOutputHelper output)
{
    /// <summary>Records the stopped spans of Dynamo's sources and ASP.NET Core's (listeners are process-wide: callers keep only their own trace).</summary>
    private sealed class SpanRecorder : IDisposable
    {
        private readonly ActivityListener _listener;

        public SpanRecorder()
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = s => s.Name.StartsWith(DynamoTracing.SourcePrefix, StringComparison.Ordinal) || s.Name == "Microsoft.AspNetCore",
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = a => Stopped.Enqueue(a),
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public ConcurrentQueue<Activity> Stopped { get; } = new();

        public Activity[] Of(ActivityTraceId trace) => [.. Stopped.Where(a => a.TraceId == trace)];

        public void Dispose() => _listener.Dispose();
    }

    private sealed class CapturingLoggers(ITestOutputHelper output) : ILoggerProvider
    {
        private readonly ConcurrentBag<TestOutputLogger> _loggers = [];

        public IEnumerable<string> Messages => _loggers.SelectMany(l => l.Entries).Select(e => e.Message);

        public ILogger CreateLogger(string categoryName)
        {
            var logger = new TestOutputLogger(output, categoryName);
            _loggers.Add(logger);
            return logger;
        }

        public void Dispose()
        {
        }
    }

    private static async Task<Activity[]> WaitForSpansAsync(SpanRecorder recorder, ActivityTraceId trace, params string[] names)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            Activity[] spans = recorder.Of(trace);
            if (names.All(n => spans.Any(s => s.OperationName == n)))
            {
                return spans;
            }

            Assert.True(DateTime.UtcNow < until, $"spans {string.Join(", ", names.Where(n => !spans.Any(s => s.OperationName == n)))} never ended; seen: {string.Join(", ", spans.Select(s => s.OperationName))}");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task ChatCompletion_InProcess_OneTraceFromFrontendToTheEnginePhases()
    {
        using var recorder = new SpanRecorder();
        using var capture = new CapturingLoggers(output);
        using var loggers = LoggerFactory.Create(b => b.AddProvider(capture));
        FrontendOptions options = FrontendOptions.Default with { Processing = ProcessorOptions.Default with { RouterMode = "kv" } };
        await using FrontendHarness h = await FrontendHarness.StartAsync(options, loggers);
        await using TestWorker worker = await h.AddWorkerAsync(new MockerEngine(MockerOptions.Default with { SpeedupRatio = 1000, ContextLength = 256, VocabSize = 512 }));
        await h.Server.WaitForModelAsync(FrontendHarness.Model);

        // The client's own trace context continues through every span (W3C traceparent on the HTTP request).
        ActivityTraceId trace = ActivityTraceId.CreateRandom();
        ActivitySpanId client = ActivitySpanId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = new StringContent($"{{\"model\":\"{FrontendHarness.Model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello there\"}}],\"max_tokens\":5,\"ignore_eos\":true}}", Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("traceparent", $"00-{trace.ToHexString()}-{client.ToHexString()}-01");
        using HttpResponseMessage response = await h.Http.SendAsync(request);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());

        Activity[] spans = await WaitForSpansAsync(recorder, trace,
            DynamoTracing.Spans.Frontend, DynamoTracing.Spans.Admission, DynamoTracing.Spans.Preprocess, DynamoTracing.Spans.Route,
            DynamoTracing.Spans.WorkerCall, DynamoTracing.Spans.Worker, DynamoTracing.Spans.Queue, DynamoTracing.Spans.Prefill, DynamoTracing.Spans.Decode);
        Activity One(string name) => Assert.Single(spans, s => s.OperationName == name);

        Activity http = Assert.Single(spans, s => s.Source.Name == "Microsoft.AspNetCore");
        Assert.Equal(client, http.ParentSpanId);
        Activity frontend = One(DynamoTracing.Spans.Frontend);
        Assert.Equal(http.SpanId, frontend.ParentSpanId);
        Assert.Equal(200, frontend.GetTagItem(DynamoTracing.Attributes.Status));
        Assert.Equal(5, frontend.GetTagItem(DynamoTracing.Attributes.CompletionTokens));
        foreach (string child in new[] { DynamoTracing.Spans.Admission, DynamoTracing.Spans.Preprocess, DynamoTracing.Spans.Route, DynamoTracing.Spans.WorkerCall })
        {
            Assert.Equal(frontend.SpanId, One(child).ParentSpanId);
        }

        Assert.True((int)One(DynamoTracing.Spans.Preprocess).GetTagItem(DynamoTracing.Attributes.PromptTokens)! > 0);
        Activity route = One(DynamoTracing.Spans.Route);
        string workerId = EndpointAddress.FormatId(worker.Runtime.InstanceId);
        Assert.Equal("kv", route.GetTagItem(DynamoTracing.Attributes.RouterMode));
        Assert.Equal(workerId, route.GetTagItem(DynamoTracing.Attributes.WorkerId));
        Assert.Equal(0, route.GetTagItem(DynamoTracing.Attributes.PredictedCachedTokens));
        Activity call = One(DynamoTracing.Spans.WorkerCall);
        Assert.Equal(ActivityKind.Client, call.Kind);
        Assert.True(route.StartTimeUtc + route.Duration <= call.StartTimeUtc);

        Activity served = One(DynamoTracing.Spans.Worker);
        Assert.Equal(ActivityKind.Server, served.Kind);
        Assert.Equal(call.SpanId, served.ParentSpanId);
        Assert.Equal(workerId, served.GetTagItem(DynamoTracing.Attributes.WorkerId));
        Activity queue = One(DynamoTracing.Spans.Queue), prefill = One(DynamoTracing.Spans.Prefill), decode = One(DynamoTracing.Spans.Decode);
        foreach (Activity phase in new[] { queue, prefill, decode })
        {
            Assert.Equal(served.SpanId, phase.ParentSpanId);
            Assert.True(phase.StartTimeUtc >= served.StartTimeUtc && phase.StartTimeUtc + phase.Duration <= served.StartTimeUtc + served.Duration + TimeSpan.FromMilliseconds(50),
                $"{phase.OperationName} {phase.StartTimeUtc:O}+{phase.Duration} outside the worker's span {served.StartTimeUtc:O}+{served.Duration}");
        }

        // The phases follow one another: queued until the first step, prefill until the first token, decode to the last.
        Assert.Equal(queue.StartTimeUtc + queue.Duration, prefill.StartTimeUtc);
        Assert.Equal(prefill.StartTimeUtc + prefill.Duration, decode.StartTimeUtc);
        Assert.Equal(5, decode.GetTagItem(DynamoTracing.Attributes.CompletionTokens));
        Assert.Equal("length", decode.GetTagItem(DynamoTracing.Attributes.FinishReason));
        Assert.Equal(One(DynamoTracing.Spans.Preprocess).GetTagItem(DynamoTracing.Attributes.PromptTokens), prefill.GetTagItem(DynamoTracing.Attributes.PromptTokens));

        // The frontend's log line of the request names its trace.
        Assert.Contains(capture.Messages, m => m.StartsWith("request chatcmpl-", StringComparison.Ordinal) && m.Contains($"trace_id={trace.ToHexString()}", StringComparison.Ordinal));
    }
}

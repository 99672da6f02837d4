using System.Globalization;
using System.Text;
using System.Text.Json;
using Dynamo.Frontend;
using Dynamo.Tests.Runtime;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// The frontend's overload contract over real HTTP: with every slot taken, requests wait and are admitted by
/// priority; a full queue refuses (or displaces) the lowest priority; waits time out; per-client and per-model
/// limits answer 429. Each refusal: its status, Retry-After, X-Dynamo-Reject-Reason, the error object's code and
/// the metrics. An echo engine held before its steps keeps the requests that take the slots in flight.
/// </summary>
public sealed class AdmissionTests
{
    private const string Completions = "v1/completions";
    private const string AdmissionGauge = "dynamo_frontend_queued_requests{model=\"tiny\",stage=\"admission\"}";

    private static Task<FrontendHarness> StartAsync(AdmissionOptions admission) => FrontendHarness.StartAsync(FrontendOptions.Default with { Admission = admission });

    /// <summary>Adds a worker whose echo engine is held (before its next step) until the test releases it.</summary>
    private static async Task<HeldEchoEngine> AddHeldWorkerAsync(FrontendHarness h)
    {
        var engine = new HeldEchoEngine();
        await h.AddWorkerAsync(engine);
        engine.Hold();
        return engine;
    }

    /// <summary>Sends a request and waits until the held engine has it (it then holds its slot and its counts).</summary>
    private static async Task<Task<HttpResponseMessage>> SendUntilAtTheEngineAsync(FrontendHarness h, HeldEchoEngine engine, int marker, params (string Name, string Value)[] headers)
    {
        Task<HttpResponseMessage> sent = SendAsync(h, Body(marker), headers);
        await Eventually.WaitUntilAsync(() => engine.Submitted.Contains(marker), $"request {marker} at the engine");
        return sent;
    }

    /// <summary>A completion whose prompt starts with <paramref name="marker"/> (what the engine records).</summary>
    private static string Body(int marker, int? priority = null, bool stream = false) =>
        $"{{\"model\":\"{FrontendHarness.Model}\",\"prompt\":[{marker},11,12],\"max_tokens\":2{(priority is int p ? $",\"priority\":{p}" : "")}{(stream ? ",\"stream\":true" : "")}}}";

    private static Task<HttpResponseMessage> SendAsync(FrontendHarness h, string json, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, Completions) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        foreach ((string name, string value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return h.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    }

    internal static async Task<double> MetricAsync(FrontendHarness h, string series)
    {
        string text = await h.Http.GetStringAsync("/metrics");
        string? line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(series.Length + 1)..], CultureInfo.InvariantCulture);
    }

    private static async Task WaitForQueuedAsync(FrontendHarness h, int count)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (await MetricAsync(h, AdmissionGauge) != count)
        {
            Assert.True(clock.Elapsed < Eventually.Patience, $"timed out waiting for {count} requests in the admission queue");
            await Task.Delay(10);
        }
    }

    /// <summary>Asserts an overload refusal: status, Retry-After, the reason header and the error object; JSON even for a streaming request.</summary>
    internal static async Task AssertRefusedAsync(Task<HttpResponseMessage> pending, int status, string type, string reason)
    {
        using HttpResponseMessage response = await pending;
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("1", Assert.Single(response.Headers.GetValues("Retry-After")));
        Assert.Equal(reason, Assert.Single(response.Headers.GetValues("X-Dynamo-Reject-Reason")));
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        JsonElement error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        Assert.Equal(reason, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
    }

    private static async Task AssertCompletedAsync(Task<HttpResponseMessage> pending)
    {
        using HttpResponseMessage response = await pending;
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"HTTP {(int)response.StatusCode}: {text}");
    }

    [Fact]
    public async Task SlotsTaken_QueuedRequestsOfMixedPriority_AdmittedLowestValueFirstThenInArrivalOrder()
    {
        await using FrontendHarness h = await StartAsync(AdmissionOptions.Default with { MaxInflightRequests = 1 });
        HeldEchoEngine engine = await AddHeldWorkerAsync(h);
        Task<HttpResponseMessage> blocker = await SendUntilAtTheEngineAsync(h, engine, 100);

        // Sent one by one, each queued before the next: marker, body priority, streaming, the priority header.
        var queued = new List<Task<HttpResponseMessage>>();
        foreach ((int marker, int priority, bool stream, string? header) in new[] { (1, 5, false, null), (2, 0, false, null), (3, 5, true, null), (4, -3, false, null), (5, 9, false, (string?)"0") })
        {
            queued.Add(SendAsync(h, Body(marker, priority, stream), header is null ? [] : [("X-Request-Priority", header)]));
            await WaitForQueuedAsync(h, queued.Count);
        }

        engine.Release();

        await AssertCompletedAsync(blocker);
        foreach (Task<HttpResponseMessage> q in queued)
        {
            await AssertCompletedAsync(q);
        }

        Assert.Equal([100, 4, 2, 5, 1, 3], engine.Submitted);
        Assert.Equal(0, await MetricAsync(h, AdmissionGauge));
    }

    [Fact]
    public async Task QueueFull_LowPriorityRefusedOrDisplaced503_HighPriorityComplete()
    {
        await using FrontendHarness h = await StartAsync(AdmissionOptions.Default with { MaxInflightRequests = 1, MaxQueuedRequests = 2 });
        HeldEchoEngine engine = await AddHeldWorkerAsync(h);
        Task<HttpResponseMessage> blocker = await SendUntilAtTheEngineAsync(h, engine, 100);
        Task<HttpResponseMessage> lowA = SendAsync(h, Body(1, priority: 5));
        await WaitForQueuedAsync(h, 1);
        Task<HttpResponseMessage> lowB = SendAsync(h, Body(2, priority: 5, stream: true));
        await WaitForQueuedAsync(h, 2);

        Task<HttpResponseMessage> highC = SendAsync(h, Body(3, priority: 0));
        await AssertRefusedAsync(lowB, 503, "service_unavailable_error", "queue_full");
        await AssertRefusedAsync(SendAsync(h, Body(4, priority: 5)), 503, "service_unavailable_error", "queue_full");
        await AssertRefusedAsync(SendAsync(h, Body(6, priority: 7, stream: true)), 503, "service_unavailable_error", "queue_full");
        Task<HttpResponseMessage> highE = SendAsync(h, Body(5), ("X-Request-Priority", "-1"));
        await AssertRefusedAsync(lowA, 503, "service_unavailable_error", "queue_full");
        Assert.Equal(2, await MetricAsync(h, AdmissionGauge));
        engine.Release();

        await AssertCompletedAsync(blocker);
        await AssertCompletedAsync(highC);
        await AssertCompletedAsync(highE);
        Assert.Equal([100, 5, 3], engine.Submitted);
        Assert.Equal(4, await MetricAsync(h, "dynamo_frontend_rejected_requests_total{reason=\"queue_full\"}"));
        Assert.Equal(4, await MetricAsync(h, "dynamo_frontend_model_rejection_total{model=\"tiny\"}"));
        Assert.Equal(0, await MetricAsync(h, AdmissionGauge));
    }

    [Fact]
    public async Task SlotsTakenPastTheQueueTimeout_503QueueTimeout()
    {
        await using FrontendHarness h = await StartAsync(AdmissionOptions.Default with { MaxInflightRequests = 1, QueueTimeout = TimeSpan.FromMilliseconds(200) });
        HeldEchoEngine engine = await AddHeldWorkerAsync(h);
        Task<HttpResponseMessage> blocker = await SendUntilAtTheEngineAsync(h, engine, 100);

        await AssertRefusedAsync(SendAsync(h, Body(1, stream: true)), 503, "service_unavailable_error", "queue_timeout");
        engine.Release();

        await AssertCompletedAsync(blocker);
        Assert.Equal([100], engine.Submitted);
        Assert.Equal(1, await MetricAsync(h, "dynamo_frontend_rejected_requests_total{reason=\"queue_timeout\"}"));
        Assert.Equal(0, await MetricAsync(h, AdmissionGauge));
    }

    [Fact]
    public async Task PerClientLimit_SameKeyOrSameAddress429_OtherKeysServed()
    {
        await using FrontendHarness h = await StartAsync(AdmissionOptions.Default with { MaxInflightPerClient = 1 });
        HeldEchoEngine engine = await AddHeldWorkerAsync(h);
        Task<HttpResponseMessage> keyA = await SendUntilAtTheEngineAsync(h, engine, 1, ("Authorization", "Bearer key-a"));
        Task<HttpResponseMessage> noKey = await SendUntilAtTheEngineAsync(h, engine, 2);

        await AssertRefusedAsync(SendAsync(h, Body(3), ("Authorization", "Bearer key-a")), 429, "rate_limit_error", "client_limit");
        await AssertRefusedAsync(SendAsync(h, Body(4, stream: true)), 429, "rate_limit_error", "client_limit");
        Task<HttpResponseMessage> keyB = await SendUntilAtTheEngineAsync(h, engine, 5, ("Authorization", "Bearer key-b"));
        engine.Release();

        await AssertCompletedAsync(keyA);
        await AssertCompletedAsync(noKey);
        await AssertCompletedAsync(keyB);
        await AssertCompletedAsync(SendAsync(h, Body(6), ("Authorization", "Bearer key-a")));
        Assert.Equal(2, await MetricAsync(h, "dynamo_frontend_rejected_requests_total{reason=\"client_limit\"}"));
    }

    [Fact]
    public async Task PerModelLimit_429ModelLimitUntilOneEnds()
    {
        await using FrontendHarness h = await StartAsync(AdmissionOptions.Default with { MaxInflightPerModel = 1 });
        HeldEchoEngine engine = await AddHeldWorkerAsync(h);
        Task<HttpResponseMessage> first = await SendUntilAtTheEngineAsync(h, engine, 1, ("Authorization", "Bearer key-a"));

        await AssertRefusedAsync(SendAsync(h, Body(2), ("Authorization", "Bearer key-b")), 429, "rate_limit_error", "model_limit");
        engine.Release();

        await AssertCompletedAsync(first);
        await AssertCompletedAsync(SendAsync(h, Body(3)));
        Assert.Equal(1, await MetricAsync(h, "dynamo_frontend_rejected_requests_total{reason=\"model_limit\"}"));
        Assert.Equal(1, await MetricAsync(h, "dynamo_frontend_model_rejection_total{model=\"tiny\"}"));
    }
}

using System.Text;
using System.Text.Json;
using Dynamo.Frontend;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Runtime;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// Request deadlines over real HTTP: a request past its deadline (the server's default, the body's <c>timeout</c>
/// or the X-Request-Timeout header) ends with deadline_exceeded (504, or an error event and [DONE] once streaming)
/// and its cancellation reaches the engine: the worker has nothing in flight and the engine's KV blocks are free.
/// Each test waits for a deadline of real time to pass: in <see cref="TimingCollection"/>.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed class DeadlineTests
{
    /// <summary>The echo engine generates the prompt back: this many tokens when nothing stops it.</summary>
    private const int PromptTokens = 40;

    private static string Body(string extra = "") =>
        $"{{\"model\":\"{FrontendHarness.Model}\",\"prompt\":[{string.Join(',', Enumerable.Range(20, PromptTokens))}],\"max_tokens\":100{extra}}}";

    private static async Task AssertFreedAsync(TestWorker worker, HeldEchoEngine engine)
    {
        // The client's answer comes before the cancellation has crossed the request plane (two hops through a Processor):
        // released earlier, the held engine ran the request on (a CI run: all 40 tokens).
        await Eventually.WaitUntilAsync(() => engine.CancelledRequests > 0, "the cancellation to reach the engine");
        engine.Release();
        await Eventually.WaitUntilAsync(() => worker.Worker!.InFlight == 0, "the worker to have no request in flight");
        await Eventually.WaitUntilAsync(() => engine.Stats is { KvBlocksUsed: 0, RunningRequests: 0, WaitingRequests: 0 }, "the engine's KV blocks to be free");
        Assert.True(engine.Stats.GeneratedTokens < PromptTokens, $"the request ran on ({engine.Stats.GeneratedTokens} tokens) instead of being cancelled");
    }

    private static void AssertDeadlineError(JsonElement error)
    {
        Assert.Equal("timeout_error", error.GetProperty("type").GetString());
        Assert.Equal("deadline_exceeded", error.GetProperty("code").GetString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NonStreaming_PastTheServersDefaultDeadline_504AndTheEngineFreesItsBlocks(bool throughProcessor)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { Admission = AdmissionOptions.Default with { RequestTimeout = TimeSpan.FromSeconds(1) } }, processor: throughProcessor);
        var engine = new HeldEchoEngine();
        TestWorker worker = await h.AddWorkerAsync(engine);
        engine.Hold(steps: 1);

        var (status, body) = await h.PostJsonAsync("v1/completions", Body());

        Assert.Equal(504, status);
        AssertDeadlineError(body.GetProperty("error"));
        Assert.True(engine.Stats.KvBlocksUsed > 0);
        await AssertFreedAsync(worker, engine);
        Assert.Equal(1, await AdmissionTests.MetricAsync(h, "dynamo_frontend_requests_total{model=\"tiny\",endpoint=\"completions\",request_type=\"unary\",status=\"error\"}"));
    }

    [Fact]
    public async Task Streaming_PastTheRequestsTimeout_TokensThenAnErrorEventThenDone()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        var engine = new HeldEchoEngine();
        TestWorker worker = await h.AddWorkerAsync(engine);
        engine.Hold(steps: 3);

        Sse sse = await h.PostSseAsync("v1/completions", Body(",\"stream\":true,\"timeout\":2"));

        Assert.Equal(200, sse.Status);
        List<JsonElement> events = sse.Events();
        Assert.True(events.Count >= 2, $"expected tokens before the error, got {string.Join(" | ", sse.Data)}");
        Assert.All(events[..^1], e => Assert.False(e.TryGetProperty("error", out _)));
        AssertDeadlineError(events[^1].GetProperty("error"));
        await AssertFreedAsync(worker, engine);
    }

    [Fact]
    public async Task WaitingForASlot_PastTheHeadersDeadline_504NotAQueueTimeout()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { Admission = AdmissionOptions.Default with { MaxInflightRequests = 1 } });
        var engine = new HeldEchoEngine();
        TestWorker worker = await h.AddWorkerAsync(engine);
        engine.Hold();
        Task<HttpResponseMessage> blocker = h.PostAsync("v1/completions", Body());
        await Eventually.WaitUntilAsync(() => engine.Submitted.Count == 1, "the first request at the engine");

        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new StringContent(Body(), Encoding.UTF8, "application/json") };
        request.Headers.Add("X-Request-Timeout", "0.3");
        using HttpResponseMessage response = await h.Http.SendAsync(request);

        Assert.Equal(504, (int)response.StatusCode);
        Assert.False(response.Headers.Contains("X-Dynamo-Reject-Reason"));
        AssertDeadlineError(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error"));
        Assert.Single(engine.Submitted);
        engine.Release();
        using HttpResponseMessage first = await blocker;
        Assert.Equal(200, (int)first.StatusCode);
        Assert.Equal(0, await AdmissionTests.MetricAsync(h, "dynamo_frontend_queued_requests{model=\"tiny\",stage=\"admission\"}"));
        await Eventually.WaitUntilAsync(() => worker.Worker!.InFlight == 0, "the worker to have no request in flight");
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Dynamo.Load;
using Dynamo.Load.Client;
using Dynamo.Load.Reports;
using Dynamo.Load.Workloads;

namespace Dynamo.Tests.Load.Client;

public class BenchServeClientTests
{
    private static ChatStreamClient Client(string url) => new(url, "fake-model", TimeProvider.System, TimeProvider.System.GetTimestamp(), maxConnections: 1);

    private static readonly ChatMessage[] Hello = [new("user", "hello there")];

    [Fact]
    public async Task SendAsync_StreamingServer_CountsTokensTtftGapsAndText()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (_, _) => new FakeReply { DelayPerPiece = TimeSpan.FromMilliseconds(5) };
        using ChatStreamClient client = Client(server.Url);

        RequestResult r = await client.SendAsync(Hello, 6);

        Assert.Equal(RequestOutcome.Ok, r.Outcome);
        Assert.Equal(6, r.OutputTokens);
        Assert.Equal(11, r.PromptTokens);
        Assert.Equal("t0 t1 t2 t3 t4 t5 ", r.Text);
        Assert.Equal(5, r.TokenGaps.Count);
        Assert.All(r.TokenGaps, g => Assert.True(g >= 0, $"gap {g}"));
        Assert.NotNull(r.Ttft);
        Assert.True(r.Ttft > 0 && r.Ttft <= r.EndToEnd);
        Assert.True(r.TokenGaps.Sum() <= r.EndToEnd - r.Ttft!.Value + 1e-9, "the gaps lie between the first chunk and the end");
        Assert.Null(r.Error);
    }

    [Fact]
    public async Task SendAsync_NoUsageChunk_CountsContentChunks()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (_, _) => new FakeReply { Usage = false, Pieces = ["a", "b", "c"] };
        using ChatStreamClient client = Client(server.Url + "/v1/");

        RequestResult r = await client.SendAsync(Hello, 10);

        Assert.Equal(RequestOutcome.Ok, r.Outcome);
        Assert.Equal(3, r.OutputTokens);
        Assert.Null(r.PromptTokens);
        Assert.Equal("abc", r.Text);
    }

    [Fact]
    public async Task SendAsync_RequestBody_IsAStreamingChatRequestWithUsageAndIgnoreEos()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        using ChatStreamClient client = Client(server.Url);

        await client.SendAsync([new("system", "be brief"), new("user", "hi")], 7);

        JsonElement body = Assert.Single(server.Requests).Body;
        Assert.Equal("fake-model", body.GetProperty("model").GetString());
        Assert.Equal(7, body.GetProperty("max_tokens").GetInt32());
        Assert.True(body.GetProperty("stream").GetBoolean());
        Assert.True(body.GetProperty("stream_options").GetProperty("include_usage").GetBoolean());
        Assert.True(body.GetProperty("ignore_eos").GetBoolean());
        Assert.Equal(["system:be brief", "user:hi"], body.GetProperty("messages").EnumerateArray().Select(m => $"{m.GetProperty("role").GetString()}:{m.GetProperty("content").GetString()}"));
    }

    [Theory]
    [InlineData(429, true)]
    [InlineData(503, true)]
    [InlineData(500, false)]
    [InlineData(400, false)]
    public async Task SendAsync_HttpStatus_RejectionOrErrorWithTheServersMessage(int status, bool rejection)
    {
        RequestOutcome expected = rejection ? RequestOutcome.Rejected : RequestOutcome.Error;
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (_, _) => new FakeReply { Status = status };
        using ChatStreamClient client = Client(server.Url);

        RequestResult r = await client.SendAsync(Hello, 4);

        Assert.Equal(expected, r.Outcome);
        Assert.Equal(status, r.StatusCode);
        Assert.Equal($"HTTP {status}: fake status {status}", r.Error);
        Assert.Null(r.Ttft);
    }

    [Fact]
    public async Task SendAsync_StreamWithoutDone_IsAnError()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (_, _) => new FakeReply { Cut = true };
        using ChatStreamClient client = Client(server.Url);

        RequestResult r = await client.SendAsync(Hello, 4);

        Assert.Equal(RequestOutcome.Error, r.Outcome);
        Assert.Contains("[DONE]", r.Error);
    }

    [Fact]
    public async Task SendAsync_ErrorEvent_IsAnError()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (_, _) => new FakeReply { ErrorEvent = true };
        using ChatStreamClient client = Client(server.Url);

        RequestResult r = await client.SendAsync(Hello, 4);

        Assert.Equal(RequestOutcome.Error, r.Outcome);
        Assert.Contains("fake mid-stream failure", r.Error);
    }

    [Fact]
    public async Task SendAsync_NothingListening_IsAnErrorNotAnException()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using ChatStreamClient client = Client($"http://127.0.0.1:{port}");

        RequestResult r = await client.SendAsync(Hello, 4);

        Assert.Equal(RequestOutcome.Error, r.Outcome);
        Assert.StartsWith("HttpRequestException", r.Error);
    }

    [Fact]
    public async Task RunAsync_Concurrency_CapsRequestsInFlightAndSendsThemAll()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (_, _) => new FakeReply { DelayPerPiece = TimeSpan.FromMilliseconds(10) };
        LoadOptions options = LoadOptions.Default with { Url = server.Url, Model = "m", Concurrency = 3, NumPrompts = 12, InputLen = 5, OutputLen = 4 };
        int completed = 0;
        var runner = new LoadRunner(options) { OnCompleted = _ => Interlocked.Increment(ref completed) };

        (List<RequestResult> results, double seconds, bool interrupted) = await runner.RunAsync(new RandomWorkload().Build(options));

        Assert.Equal(12, results.Count);
        Assert.Equal(12, completed);
        Assert.False(interrupted);
        Assert.All(results, r => Assert.Equal(RequestOutcome.Ok, r.Outcome));
        Assert.InRange(server.MaxInFlight, 2, 3);
        Assert.True(seconds >= results.Max(r => r.Start + r.EndToEnd) - 1e-3);
    }

    [Fact]
    public async Task RunAsync_RejectionsAndErrors_AreCountedApartInTheReport()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (i, _) => (i % 5) switch
        {
            0 => new FakeReply { Status = 429 },
            1 => new FakeReply { Status = 503 },
            2 => new FakeReply { Status = 500 },
            _ => new FakeReply(),
        };
        LoadOptions options = LoadOptions.Default with { Url = server.Url, Model = "m", Concurrency = 1, NumPrompts = 10, InputLen = 3, OutputLen = 2 };

        (List<RequestResult> results, double seconds, bool interrupted) = await new LoadRunner(options).RunAsync(new RandomWorkload().Build(options));
        LoadReport report = LoadReport.From(options, "random", results, seconds, interrupted);

        Assert.Equal(10, report.Requests);
        Assert.Equal(4, report.Completed);
        Assert.Equal(4, report.Rejected);
        Assert.Equal(2, report.Errors);
        Assert.Equal(8, report.OutputTokens);
        Assert.Equal(44, report.InputTokens);
        Assert.Equal(["HTTP 429: fake status 429", "HTTP 503: fake status 503", "HTTP 500: fake status 500"], report.ErrorMessages);
        Assert.Equal(4, report.EndToEnd.Count);
        Assert.Equal(4, report.Itl.Count);
    }

    [Fact]
    public async Task RunAsync_MultiTurn_EachTurnCarriesTheEarlierTurnsAndTheActualAnswers()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (i, _) => new FakeReply { Pieces = [$"answer-{i} ", "end"] };
        LoadOptions options = LoadOptions.Default with { Url = server.Url, Model = "m", Concurrency = 1, NumPrompts = 6, InputLen = 8, OutputLen = 2 };
        IReadOnlyList<LoadConversation> conversations = new MultiTurnWorkload().Build(options);

        (List<RequestResult> results, _, _) = await new LoadRunner(options).RunAsync(conversations);

        Assert.Equal(6, results.Count);
        var bodies = server.Requests.OrderBy(r => r.Index).Select(r => r.Body.GetProperty("messages").EnumerateArray()
            .Select(m => (Role: m.GetProperty("role").GetString()!, Content: m.GetProperty("content").GetString()!)).ToList()).ToList();
        Assert.Equal([1, 3, 5, 7, 1, 3], bodies.Select(b => b.Count));
        for (int turn = 1; turn < 4; turn++)
        {
            List<(string Role, string Content)> previous = bodies[turn - 1], current = bodies[turn];
            Assert.Equal(previous, current.Take(previous.Count));
            Assert.Equal(("assistant", $"answer-{turn - 1} end"), current[^2]);
            Assert.Equal(("user", conversations[0].Turns[turn].User), current[^1]);
        }

        Assert.Equal(("user", conversations[1].Turns[0].User), Assert.Single(bodies[4]));
    }

    [Fact]
    public async Task RunAsync_MultiTurnWithAFailedTurn_LeavesItOutOfTheHistory()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        server.Respond = (i, _) => i == 1 ? new FakeReply { Status = 500 } : new FakeReply { Pieces = [$"a{i}"] };
        LoadOptions options = LoadOptions.Default with { Url = server.Url, Model = "m", Concurrency = 1, NumPrompts = 3, InputLen = 4, OutputLen = 1 };

        await new LoadRunner(options).RunAsync(new MultiTurnWorkload().Build(options));

        JsonElement third = server.Requests.Single(r => r.Index == 2).Body;
        Assert.Equal(["user", "assistant", "user"], third.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("role").GetString()));
        Assert.Equal("a0", third.GetProperty("messages")[1].GetProperty("content").GetString());
    }

    [Fact]
    public async Task RunAsync_TraceArrivals_NoRequestIsSentBeforeItsScaledTimestamp()
    {
        await using FakeOpenAiServer server = await FakeOpenAiServer.StartAsync();
        LoadOptions options = LoadOptions.Default with { Url = server.Url, Model = "m", Concurrency = 4, NumPrompts = 3, TraceScale = 2, OutputLen = 1, TraceBlockTokens = 4 };
        TraceRecord[] records = [new(1000, 8, 1, [1, 2]), new(1000, 8, 1, [1, 3]), new(1600, 8, 1, [1, 4])];

        (List<RequestResult> results, _, _) = await new LoadRunner(options).RunAsync(TraceWorkload.ToConversations(records, options));

        double[] starts = [.. results.Select(r => r.Start).Order()];
        Assert.True(starts[1] < 0.25, $"the first two arrive at 0 s: {starts[1]}");
        Assert.True(starts[2] >= 0.29, $"the third arrives at (1600 - 1000) / 2 = 300 ms: {starts[2]}");
    }
}

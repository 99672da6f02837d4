using Dynamo.Load;
using Dynamo.Load.Benchmarks;
using Dynamo.Load.Client;
using Dynamo.Load.Workloads;
using Dynamo.Tests.Runtime;

namespace Dynamo.Tests.Load.Client;

/// <summary>
/// The load client against <see cref="KeepAliveChatServer"/>, a server that reuses connections as
/// llama-server's cpp-httplib does (a fixed pool of connection threads, keep-alive limits by count and by
/// idle time, closes with and without <c>Connection: close</c>): nothing lost, nothing counted twice.
/// </summary>
public class ChatStreamClientConnectionTests
{
    private static readonly ChatMessage[] Hello = [new("user", "hello there")];

    private static ChatStreamClient Client(string url) => new(url, "m", TimeProvider.System, TimeProvider.System.GetTimestamp(), maxConnections: 1);

    [Theory]
    [InlineData(2, CloseMode.Alternating)]
    [InlineData(1, CloseMode.Silent)]
    public async Task RunAsync_HttplibLikeServerAtConcurrency16_LosesNoRequestAndCountsEveryToken(int requestsPerConnection, CloseMode mode)
    {
        using var server = new KeepAliveChatServer(KeepAliveServerOptions.Default with
        {
            HandlerThreads = 4,
            MaxRequestsPerConnection = requestsPerConnection,
            CloseMode = mode,
            KeepAliveIdle = TimeSpan.FromMilliseconds(200),
        });
        LoadOptions options = LoadOptions.Default with { Url = server.Url, Model = "m", Concurrency = 16, NumPrompts = 48, InputLen = 8, OutputLen = 5 };

        ServeBenchmark.Outcome outcome = await ServeBenchmark.RunAsync(options, new RandomWorkload(), warmup: true, progress: false, TextWriter.Null);

        Assert.Equal(48, outcome.Report.Requests);
        Assert.Equal([], outcome.Report.ErrorMessages);
        Assert.Equal(48, outcome.Report.Completed);
        Assert.Equal(0, outcome.Report.Errors);
        Assert.All(outcome.Results, r => Assert.Equal(5, r.OutputTokens));
        Assert.Equal(48 * 5, outcome.Report.OutputTokens);
        Assert.Equal(48 + 1, server.Answered);
        Assert.True(server.MaxWaiting > 0, "no connection waited for a handler thread");
        Assert.True(server.ClosedUnanswered > 0, "no request crossed a silent close");
        Assert.True(outcome.Report.Retries >= server.ClosedUnanswered, $"{outcome.Report.Retries} resent, {server.ClosedUnanswered} requests dropped by the server");
        Assert.Equal(server.Requests - server.Answered, server.ClosedUnanswered);
    }

    [Theory]
    [InlineData(CloseMode.WithHeader, 0)]
    [InlineData(CloseMode.Silent, 1)]
    public async Task SendAsync_ConnectionClosedAfterOneRequest_TheNextIsAnsweredOnANewConnection(CloseMode mode, int retries)
    {
        using var server = new KeepAliveChatServer(KeepAliveServerOptions.Default with { HandlerThreads = 1, MaxRequestsPerConnection = 1, CloseMode = mode, KeepAliveIdle = TimeSpan.FromMinutes(1) });
        using ChatStreamClient client = Client(server.Url);

        RequestResult first = await client.SendAsync(Hello, 3);
        RequestResult second = await client.SendAsync(Hello, 3);

        Assert.Equal(RequestOutcome.Ok, first.Outcome);
        Assert.Equal(0, first.Retries);
        Assert.Equal(RequestOutcome.Ok, second.Outcome);
        Assert.Equal(3, second.OutputTokens);
        Assert.Equal(retries, second.Retries);
        Assert.Equal(2, server.Answered);
        Assert.Equal(retries, server.ClosedUnanswered);
        Assert.Equal(2 + retries, server.Requests);
        Assert.Equal(2, server.Connections);
    }

    [Fact]
    public async Task SendAsync_ServerClosedTheIdleConnection_TheNextRequestIsAnswered()
    {
        using var server = new KeepAliveChatServer(KeepAliveServerOptions.Default with { HandlerThreads = 1, KeepAliveIdle = TimeSpan.FromMilliseconds(20) });
        using ChatStreamClient client = Client(server.Url);

        RequestResult first = await client.SendAsync(Hello, 2);
        await Eventually.WaitUntilAsync(() => server.IdleClosed == 1, "the server to close the idle connection");
        RequestResult second = await client.SendAsync(Hello, 2);

        Assert.Equal(RequestOutcome.Ok, first.Outcome);
        Assert.Equal(RequestOutcome.Ok, second.Outcome);
        Assert.Equal(2, server.Answered);
    }

    [Theory]
    [InlineData(5)]
    [InlineData(120)]
    [InlineData(400)]
    public async Task SendAsync_ResponseCutAfterSomeBytes_IsAnErrorAndNotResent(int bytes)
    {
        using var server = new KeepAliveChatServer(KeepAliveServerOptions.Default with { HandlerThreads = 1, CutResponseAfter = _ => bytes });
        using ChatStreamClient client = Client(server.Url);

        RequestResult r = await client.SendAsync(Hello, 20);

        Assert.Equal(RequestOutcome.Error, r.Outcome);
        Assert.Equal(0, r.Retries);
        Assert.Contains("ended prematurely", r.Error);
        Assert.Contains($"after {bytes} response bytes", r.Error);
        Assert.Equal(1, server.Requests);
        Assert.Equal(1, server.Cut);
    }
}

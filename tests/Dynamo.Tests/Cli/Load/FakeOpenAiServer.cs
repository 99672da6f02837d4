using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Dynamo.Tests.Cli.Load;

/// <summary>What the fake server does with one request.</summary>
public sealed record FakeReply
{
    public int Status { get; init; } = 200;

    /// <summary>Content deltas; null: max_tokens pieces "t0 ", "t1 ", ...</summary>
    public IReadOnlyList<string>? Pieces { get; init; }

    public TimeSpan DelayPerPiece { get; init; }

    public bool Usage { get; init; } = true;

    /// <summary>End the stream without data: [DONE].</summary>
    public bool Cut { get; init; }

    /// <summary>Send an error event instead of content.</summary>
    public bool ErrorEvent { get; init; }
}

/// <summary>
/// A minimal OpenAI streaming chat server on 127.0.0.1 (a free port): records every request body and
/// answers as <see cref="Respond"/> says, in OpenAI's SSE chunk format.
/// </summary>
public sealed class FakeOpenAiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _count, _inFlight, _maxInFlight;

    private FakeOpenAiServer(WebApplication app) => _app = app;

    public Func<int, JsonElement, FakeReply> Respond { get; set; } = (_, _) => new FakeReply();

    public ConcurrentQueue<(int Index, JsonElement Body, TimeSpan At)> Requests { get; } = new();

    public string Url { get; private set; } = "";

    public int MaxInFlight => Volatile.Read(ref _maxInFlight);

    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    public static async Task<FakeOpenAiServer> StartAsync()
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        WebApplication app = builder.Build();
        var server = new FakeOpenAiServer(app);
        app.MapPost("/v1/chat/completions", server.HandleAsync);
        await app.StartAsync();
        server.Url = app.Urls.Single();
        return server;
    }

    private async Task HandleAsync(HttpContext context)
    {
        int inFlight = Interlocked.Increment(ref _inFlight);
        int seen;
        while (inFlight > (seen = Volatile.Read(ref _maxInFlight)) && Interlocked.CompareExchange(ref _maxInFlight, inFlight, seen) != seen)
        {
        }

        try
        {
            using JsonDocument doc = await JsonDocument.ParseAsync(context.Request.Body);
            JsonElement body = doc.RootElement.Clone();
            int index = Interlocked.Increment(ref _count) - 1;
            Requests.Enqueue((index, body, _clock.Elapsed));
            FakeReply reply = Respond(index, body);
            if (reply.Status != 200)
            {
                context.Response.StatusCode = reply.Status;
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync($"{{\"error\":{{\"message\":\"fake status {reply.Status}\",\"type\":\"fake\",\"param\":null,\"code\":{reply.Status}}}}}");
                return;
            }

            int maxTokens = body.GetProperty("max_tokens").GetInt32();
            IReadOnlyList<string> pieces = reply.Pieces ?? [.. Enumerable.Range(0, maxTokens).Select(i => $"t{i} ")];
            context.Response.ContentType = "text/event-stream";
            await SendAsync(context, new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { role = "assistant", content = "" } } } });
            if (reply.ErrorEvent)
            {
                await SendAsync(context, new { error = new { message = "fake mid-stream failure", type = "internal_error" } });
                return;
            }

            foreach (string piece in pieces)
            {
                if (reply.DelayPerPiece > TimeSpan.Zero)
                {
                    await Task.Delay(reply.DelayPerPiece);
                }

                await SendAsync(context, new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { content = piece } } } });
            }

            await SendAsync(context, new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { }, finish_reason = "length" } } });
            if (reply.Usage)
            {
                await SendAsync(context, new { id = "c", @object = "chat.completion.chunk", choices = Array.Empty<object>(), usage = new { prompt_tokens = 11, completion_tokens = pieces.Count, total_tokens = 11 + pieces.Count } });
            }

            if (!reply.Cut)
            {
                await context.Response.WriteAsync("data: [DONE]\n\n");
            }
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private static async Task SendAsync(HttpContext context, object chunk)
    {
        await context.Response.WriteAsync("data: " + JsonSerializer.Serialize(chunk) + "\n\n", Encoding.UTF8);
        await context.Response.Body.FlushAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

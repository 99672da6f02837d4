using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Dynamo.Tests.Load.Client;

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
/// answers as <see cref="Respond"/> says, in OpenAI's SSE chunk format. Plain HTTP/1.1 over a
/// TcpListener, one request per connection (<c>Connection: close</c>), the stream ending with the
/// connection: the test project does not reference ASP.NET Core, whose shared framework would keep
/// Microsoft.Extensions.* DLLs out of the test output, where the CLI under test (dynamo.dll, run with
/// `dotnet`) needs them.
/// </summary>
public sealed class FakeOpenAiServer : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Task _accept;
    private readonly ConcurrentDictionary<Task, bool> _connections = new();
    private int _count, _inFlight, _maxInFlight;

    private FakeOpenAiServer()
    {
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Url = $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        _accept = AcceptAsync();
    }

    public Func<int, JsonElement, FakeReply> Respond { get; set; } = (_, _) => new FakeReply();

    public ConcurrentQueue<(int Index, JsonElement Body, TimeSpan At)> Requests { get; } = new();

    public string Url { get; }

    public int MaxInFlight => Volatile.Read(ref _maxInFlight);

    public static Task<FakeOpenAiServer> StartAsync() => Task.FromResult(new FakeOpenAiServer());

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                TcpClient client = await _listener.AcceptTcpClientAsync(_stop.Token);
                Task connection = Task.Run(() => HandleAsync(client));
                _connections[connection] = true;
                _ = connection.ContinueWith(t => _connections.TryRemove(t, out _), TaskScheduler.Default);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (SocketException)
        {
        }
    }

    private async Task HandleAsync(TcpClient client)
    {
        using TcpClient _ = client;
        NetworkStream stream = client.GetStream();
        try
        {
            (string path, Dictionary<string, string> headers) = await ReadHeadAsync(stream);
            var body = new byte[int.Parse(headers.GetValueOrDefault("content-length", "0"), CultureInfo.InvariantCulture)];
            await stream.ReadExactlyAsync(body, _stop.Token);
            if (path != "/v1/chat/completions")
            {
                await WriteAsync(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }

            int inFlight = Interlocked.Increment(ref _inFlight);
            int seen;
            while (inFlight > (seen = Volatile.Read(ref _maxInFlight)) && Interlocked.CompareExchange(ref _maxInFlight, inFlight, seen) != seen)
            {
            }

            try
            {
                await AnswerAsync(stream, JsonDocument.Parse(body).RootElement.Clone());
            }
            finally
            {
                Interlocked.Decrement(ref _inFlight);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or EndOfStreamException)
        {
        }
    }

    private async Task AnswerAsync(NetworkStream stream, JsonElement body)
    {
        int index = Interlocked.Increment(ref _count) - 1;
        Requests.Enqueue((index, body, _clock.Elapsed));
        FakeReply reply = Respond(index, body);
        if (reply.Status != 200)
        {
            string error = $"{{\"error\":{{\"message\":\"fake status {reply.Status}\",\"type\":\"fake\",\"param\":null,\"code\":{reply.Status}}}}}";
            await WriteAsync(stream, $"HTTP/1.1 {reply.Status} Fake\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(error)}\r\nConnection: close\r\n\r\n{error}");
            return;
        }

        int maxTokens = body.GetProperty("max_tokens").GetInt32();
        IReadOnlyList<string> pieces = reply.Pieces ?? [.. Enumerable.Range(0, maxTokens).Select(i => $"t{i} ")];
        await WriteAsync(stream, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n");
        await SendAsync(stream, new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { role = "assistant", content = "" } } } });
        if (reply.ErrorEvent)
        {
            await SendAsync(stream, new { error = new { message = "fake mid-stream failure", type = "internal_error" } });
            return;
        }

        await WriteAsync(stream, ": keep-alive comment\n\n");
        foreach (string piece in pieces)
        {
            if (reply.DelayPerPiece > TimeSpan.Zero)
            {
                await Task.Delay(reply.DelayPerPiece, _stop.Token);
            }

            await SendAsync(stream, new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { content = piece } } } });
        }

        await SendAsync(stream, new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { }, finish_reason = "length" } } });
        if (reply.Usage)
        {
            await SendAsync(stream, new { id = "c", @object = "chat.completion.chunk", choices = Array.Empty<object>(), usage = new { prompt_tokens = 11, completion_tokens = pieces.Count, total_tokens = 11 + pieces.Count } });
        }

        if (!reply.Cut)
        {
            await WriteAsync(stream, "data: [DONE]\n\n");
        }
    }

    private async Task<(string Path, Dictionary<string, string> Headers)> ReadHeadAsync(NetworkStream stream)
    {
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 4 || head[^4] != '\r' || head[^3] != '\n' || head[^2] != '\r' || head[^1] != '\n')
        {
            await stream.ReadExactlyAsync(one, _stop.Token);
            head.Add(one[0]);
        }

        string[] lines = Encoding.ASCII.GetString([.. head]).Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        var headers = lines.Skip(1).Select(l => l.Split(':', 2)).ToDictionary(p => p[0].Trim().ToLowerInvariant(), p => p[1].Trim());
        return (lines[0].Split(' ')[1], headers);
    }

    private Task WriteAsync(NetworkStream stream, string text) => stream.WriteAsync(Encoding.UTF8.GetBytes(text), _stop.Token).AsTask();

    private Task SendAsync(NetworkStream stream, object chunk) => WriteAsync(stream, "data: " + JsonSerializer.Serialize(chunk) + "\n\n");

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accept;
        await Task.WhenAll(_connections.Keys);
        _stop.Dispose();
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Dynamo.Tests.Load.Client;

/// <summary>How <see cref="KeepAliveChatServer"/> ends a connection that has carried its last request.</summary>
public enum CloseMode
{
    /// <summary>The last response says <c>Connection: close</c>, then the server closes.</summary>
    WithHeader = 0,

    /// <summary>
    /// No header: the server keeps the connection until the next request arrives on it and closes it
    /// unanswered, which is what a client sees when its request crosses the server's close on the wire
    /// (here every time, not by chance). With one request per connection this is llama-server after
    /// every streamed completion: it closes at once, without <c>Connection: close</c>.
    /// </summary>
    Silent = 1,

    /// <summary>Even-numbered connections <see cref="WithHeader"/>, odd ones <see cref="Silent"/>.</summary>
    Alternating = 2,
}

/// <summary>What <see cref="KeepAliveChatServer"/> does; the defaults are those of a small cpp-httplib server.</summary>
public sealed record KeepAliveServerOptions
{
    /// <summary>Threads that serve connections, one connection each until it closes; more connections wait.</summary>
    public int HandlerThreads { get; init; } = 4;

    /// <summary>Requests a connection carries before the server closes it.</summary>
    public int MaxRequestsPerConnection { get; init; } = 5;

    public CloseMode CloseMode { get; init; } = CloseMode.WithHeader;

    /// <summary>A connection without a request for this long is closed (no Keep-Alive header announces it).</summary>
    public TimeSpan KeepAliveIdle { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Pause before each content chunk.</summary>
    public TimeSpan TokenDelay { get; init; }

    /// <summary>For the request of this index (from 0, in arrival order): close its connection after that many response bytes.</summary>
    public Func<int, int?> CutResponseAfter { get; init; } = _ => null;

    public static KeepAliveServerOptions Default { get; } = new();
}

/// <summary>
/// A second OpenAI-compatible server for the load client, written like llama-server's cpp-httplib rather
/// than like our Kestrel frontend: plain HTTP/1.1 on a TcpListener, an accept thread that queues every
/// connection, a fixed pool of handler threads with blocking sockets that each serve one connection (its
/// keep-alive requests one after the other) until it closes, so that connections beyond the pool wait;
/// idle connections closed after <see cref="KeepAliveServerOptions.KeepAliveIdle"/>; a connection closed
/// after <see cref="KeepAliveServerOptions.MaxRequestsPerConnection"/> requests, with or without
/// <c>Connection: close</c>; a request that says <c>Connection: close</c> honoured. Streaming chat
/// completions answer with SSE in chunked encoding as llama-server does: one <c>data:</c> event per chunk,
/// max_tokens content chunks, a finish chunk, a usage chunk, <c>data: [DONE]</c>, the final empty chunk.
/// </summary>
public sealed class KeepAliveChatServer : IDisposable
{
    private readonly KeepAliveServerOptions _options;
    private readonly TcpListener _listener;
    private readonly BlockingCollection<(Socket Socket, int Number)> _waiting = [];
    private readonly ConcurrentDictionary<Socket, bool> _open = new();
    private readonly Thread _acceptor;
    private readonly Thread[] _handlers;
    private volatile bool _stopping;
    private int _connections, _requests, _answered, _closedUnanswered, _cut, _idleClosed, _maxWaiting;

    public KeepAliveChatServer(KeepAliveServerOptions options)
    {
        _options = options;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start(backlog: 64);
        Url = $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        _acceptor = new Thread(Accept) { IsBackground = true, Name = "keep-alive server accept" };
        _handlers = [.. Enumerable.Range(0, options.HandlerThreads).Select(i => new Thread(Handle) { IsBackground = true, Name = $"keep-alive server handler {i}" })];
        _acceptor.Start();
        foreach (Thread t in _handlers)
        {
            t.Start();
        }
    }

    public string Url { get; }

    /// <summary>Connections accepted.</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Chat requests read, answered or not.</summary>
    public int Requests => Volatile.Read(ref _requests);

    /// <summary>Chat requests answered to their end ([DONE] and the last chunk sent).</summary>
    public int Answered => Volatile.Read(ref _answered);

    /// <summary>Requests read on a connection past its last request and closed without a response byte.</summary>
    public int ClosedUnanswered => Volatile.Read(ref _closedUnanswered);

    /// <summary>Responses cut by <see cref="KeepAliveServerOptions.CutResponseAfter"/>.</summary>
    public int Cut => Volatile.Read(ref _cut);

    /// <summary>Connections closed for being idle.</summary>
    public int IdleClosed => Volatile.Read(ref _idleClosed);

    /// <summary>Most connections that waited at once for a handler thread.</summary>
    public int MaxWaiting => Volatile.Read(ref _maxWaiting);

    private void Accept()
    {
        try
        {
            while (!_stopping)
            {
                Socket socket = _listener.AcceptSocket();
                socket.NoDelay = true;
                _open[socket] = true;
                _waiting.Add((socket, Interlocked.Increment(ref _connections) - 1));
                int waiting = _waiting.Count, seen;
                while (waiting > (seen = Volatile.Read(ref _maxWaiting)) && Interlocked.CompareExchange(ref _maxWaiting, waiting, seen) != seen)
                {
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    private void Handle()
    {
        foreach ((Socket socket, int number) in _waiting.GetConsumingEnumerable())
        {
            try
            {
                Serve(socket, number);
            }
            catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
            {
            }
            finally
            {
                _open.TryRemove(socket, out _);
                socket.Dispose();
            }
        }
    }

    private void Serve(Socket socket, int number)
    {
        bool announce = _options.CloseMode == CloseMode.WithHeader || (_options.CloseMode == CloseMode.Alternating && number % 2 == 0);
        var reader = new RequestReader(socket);
        for (int served = 0; ; served++)
        {
            if (!WaitForRequest(socket))
            {
                Interlocked.Increment(ref _idleClosed);
                return;
            }

            if (reader.Read() is not { } request)
            {
                return;
            }

            int index = Interlocked.Increment(ref _requests) - 1;
            if (served == _options.MaxRequestsPerConnection)
            {
                // Only a silent connection gets here: its last response did not say Connection: close.
                Interlocked.Increment(ref _closedUnanswered);
                socket.Shutdown(SocketShutdown.Both);
                return;
            }

            bool last = served + 1 == _options.MaxRequestsPerConnection;
            bool close = request.ConnectionClose || (last && announce);
            var response = new ResponseWriter(socket, _options.CutResponseAfter(index));
            if (!Answer(response, request.Body, close))
            {
                Interlocked.Increment(ref _cut);
                socket.Shutdown(SocketShutdown.Both);
                return;
            }

            Interlocked.Increment(ref _answered);
            if (close)
            {
                socket.Shutdown(SocketShutdown.Both);
                return;
            }
        }
    }

    // Like cpp-httplib's keep_alive(): poll for the next request until the idle time is up.
    private bool WaitForRequest(Socket socket)
    {
        var idle = Stopwatch.StartNew();
        while (!_stopping)
        {
            if (socket.Poll(TimeSpan.FromMilliseconds(10), SelectMode.SelectRead))
            {
                return true;
            }

            if (idle.Elapsed > _options.KeepAliveIdle)
            {
                return false;
            }
        }

        return false;
    }

    /// <summary>Writes the whole SSE answer; false when the response was cut.</summary>
    private bool Answer(ResponseWriter response, JsonElement body, bool close)
    {
        int maxTokens = body.GetProperty("max_tokens").GetInt32();
        string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
            + (close ? "Connection: close\r\n" : "") + "\r\n";
        if (!response.Write(head))
        {
            return false;
        }

        var events = new List<object> { new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { role = "assistant", content = "" } } } } };
        for (int i = 0; i < maxTokens; i++)
        {
            events.Add(new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { content = $"t{i} " } } } });
        }

        events.Add(new { id = "c", @object = "chat.completion.chunk", choices = new[] { new { index = 0, delta = new { }, finish_reason = "length" } } });
        events.Add(new { id = "c", @object = "chat.completion.chunk", choices = Array.Empty<object>(), usage = new { prompt_tokens = 7, completion_tokens = maxTokens, total_tokens = 7 + maxTokens } });
        foreach (object e in events)
        {
            if (_options.TokenDelay > TimeSpan.Zero)
            {
                Thread.Sleep(_options.TokenDelay);
            }

            if (!response.Write(Chunk("data: " + JsonSerializer.Serialize(e) + "\n\n")))
            {
                return false;
            }
        }

        return response.Write(Chunk("data: [DONE]\n\n") + "0\r\n\r\n");
    }

    private static string Chunk(string data) =>
        string.Create(CultureInfo.InvariantCulture, $"{Encoding.UTF8.GetByteCount(data):x}\r\n{data}\r\n");

    public void Dispose()
    {
        _stopping = true;
        _listener.Stop();
        _acceptor.Join();
        _waiting.CompleteAdding();
        foreach (Socket socket in _open.Keys)
        {
            try
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }

        foreach (Thread t in _handlers)
        {
            t.Join();
        }

        _waiting.Dispose();
    }

    /// <summary>One request: its JSON body and whether it asked to close the connection.</summary>
    private sealed record Request(JsonElement Body, bool ConnectionClose);

    /// <summary>Reads requests (head, then Content-Length bytes of body) from a blocking socket.</summary>
    private sealed class RequestReader(Socket socket)
    {
        private readonly byte[] _buffer = new byte[64 * 1024];
        private int _length;

        /// <summary>The next request; null when the client closed the connection.</summary>
        public Request? Read()
        {
            int end;
            while ((end = _buffer.AsSpan(0, _length).IndexOf("\r\n\r\n"u8)) < 0)
            {
                if (!Fill())
                {
                    return null;
                }
            }

            string[] lines = Encoding.ASCII.GetString(_buffer, 0, end).Split("\r\n");
            var headers = lines.Skip(1).Select(l => l.Split(':', 2)).ToDictionary(p => p[0].Trim().ToLowerInvariant(), p => p[1].Trim());
            int length = int.Parse(headers.GetValueOrDefault("content-length", "0"), CultureInfo.InvariantCulture);
            int start = end + 4;
            while (_length < start + length)
            {
                if (!Fill())
                {
                    return null;
                }
            }

            JsonElement body = JsonDocument.Parse(_buffer.AsMemory(start, length)).RootElement.Clone();
            _buffer.AsSpan(start + length, _length - start - length).CopyTo(_buffer);
            _length -= start + length;
            bool close = headers.TryGetValue("connection", out string? connection) && connection.Equals("close", StringComparison.OrdinalIgnoreCase);
            return new Request(body, close);
        }

        private bool Fill()
        {
            int n = socket.Receive(_buffer.AsSpan(_length));
            _length += n;
            return n > 0;
        }
    }

    /// <summary>Writes a response, stopping after a byte budget when one is set.</summary>
    private sealed class ResponseWriter(Socket socket, int? budget)
    {
        private int? _left = budget;

        /// <summary>False when the budget ran out (what fitted was sent).</summary>
        public bool Write(string text)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            int n = _left is int left ? Math.Min(left, bytes.Length) : bytes.Length;
            socket.Send(bytes.AsSpan(0, n));
            if (_left is not null)
            {
                _left -= n;
                return n == bytes.Length;
            }

            return true;
        }
    }
}

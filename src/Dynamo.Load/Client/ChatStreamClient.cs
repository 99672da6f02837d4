using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.ServerSentEvents;
using System.Text;
using System.Text.Json;

namespace Dynamo.Load.Client;

/// <summary>
/// Sends one streaming chat completion (<c>POST {url}/v1/chat/completions</c>, <c>stream</c>,
/// <c>stream_options.include_usage</c>, <c>max_tokens</c>, <c>ignore_eos</c>) and times its SSE chunks.
/// HTTP 429 and 503 are rejections; every other failure is an error. Never throws except for cancellation.
/// Connections are reused as any server expects (see the README, "Connection reuse"): at most
/// <c>maxConnections</c> of them, each stream read to its end so that its connection is free for the sender's
/// next request, idle ones closed before common servers' keep-alive ends, and a request whose connection
/// closed before one byte of the response came back resent once on a new connection, counted in
/// <see cref="RequestResult.Retries"/>.
/// </summary>
internal sealed class ChatStreamClient : IDisposable
{
    /// <summary>
    /// Pooled connections idle this long are closed: below the keep-alive of common servers (cpp-httplib in
    /// llama-server, uvicorn and Node.js close idle connections after 5 s), even when this process reads a
    /// stream's end a little after the server wrote it.
    /// </summary>
    public static readonly TimeSpan PooledConnectionIdleTimeout = TimeSpan.FromSeconds(2);

    /// <summary>How long the rest of a response after <c>data: [DONE]</c> (its last chunk) may take to arrive.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);

    private const int MaxErrorBody = 300;
    private readonly HttpClient _http;
    private readonly HttpClient _fresh;
    private readonly Uri _endpoint;
    private readonly Uri _completions;
    private readonly string _model;
    private readonly TimeProvider _time;
    private readonly long _origin;

    /// <param name="baseUrl">The server, e.g. http://localhost:8000 (a trailing /v1 is accepted).</param>
    /// <param name="model">The model field of every request.</param>
    /// <param name="time">Clock of all measurements.</param>
    /// <param name="origin">Timestamp (<paramref name="time"/>) that request start times count from.</param>
    /// <param name="maxConnections">
    /// Connections to the server at most: the requests this client has in flight at once (the load's
    /// concurrency). More would sit idle on the server, holding what it serves connections with (a thread
    /// each in cpp-httplib) while requests on the others wait.
    /// </param>
    public ChatStreamClient(string baseUrl, string model, TimeProvider time, long origin, int maxConnections)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConnections, 1);
        string trimmed = baseUrl.TrimEnd('/');
        if (trimmed.EndsWith("/v1", StringComparison.Ordinal))
        {
            trimmed = trimmed[..^3];
        }

        _endpoint = new Uri(trimmed + "/v1/chat/completions");
        _completions = new Uri(trimmed + "/v1/completions");
        _model = model;
        _time = time;
        _origin = origin;
        _http = new HttpClient(Handler(maxConnections, PooledConnectionIdleTimeout)) { Timeout = Timeout.InfiniteTimeSpan };

        // Resends: every one on a connection of its own, closed after it (no pooling, Connection: close).
        _fresh = new HttpClient(Handler(maxConnections, TimeSpan.Zero)) { Timeout = Timeout.InfiniteTimeSpan };
    }

    private static SocketsHttpHandler Handler(int maxConnections, TimeSpan idleTimeout) => new()
    {
        MaxConnectionsPerServer = maxConnections,
        PooledConnectionIdleTimeout = idleTimeout,
        PooledConnectionLifetime = idleTimeout == TimeSpan.Zero ? TimeSpan.Zero : Timeout.InfiniteTimeSpan,
        ConnectTimeout = TimeSpan.FromSeconds(10),
        AutomaticDecompression = DecompressionMethods.None,
        ConnectCallback = CountingConnectionStream.ConnectAsync,
    };

    public Uri Endpoint => _endpoint;

    /// <summary>The request body: model, messages, max_tokens, stream with usage, ignore_eos.</summary>
    public static byte[] RequestBody(string model, IReadOnlyList<ChatMessage> messages, int maxTokens)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("model", model);
            writer.WriteStartArray("messages");
            foreach (ChatMessage m in messages)
            {
                writer.WriteStartObject();
                writer.WriteString("role", m.Role);
                writer.WriteString("content", m.Content);
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            WriteStreamingTail(writer, maxTokens);
        }

        return buffer.ToArray();
    }

    /// <summary>Sends one request and measures it; only <paramref name="cancellationToken"/> makes it throw.</summary>
    public Task<RequestResult> SendAsync(IReadOnlyList<ChatMessage> messages, int maxTokens, CancellationToken cancellationToken = default) =>
        SendBodyAsync(_endpoint, RequestBody(_model, messages, maxTokens), cancellationToken);

    /// <summary>One streaming completion (<c>/v1/completions</c>) whose prompt is exactly <paramref name="promptTokenIds"/>.</summary>
    public Task<RequestResult> SendTokensAsync(IReadOnlyList<int> promptTokenIds, int maxTokens, CancellationToken cancellationToken = default) =>
        SendBodyAsync(_completions, TokensRequestBody(_model, promptTokenIds, maxTokens), cancellationToken);

    /// <summary>The JSON body of a streaming token-id completion (usage included, EOS ignored).</summary>
    public static byte[] TokensRequestBody(string model, IReadOnlyList<int> promptTokenIds, int maxTokens)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("model", model);
            writer.WriteStartArray("prompt");
            foreach (int id in promptTokenIds)
            {
                writer.WriteNumberValue(id);
            }

            writer.WriteEndArray();
            WriteStreamingTail(writer, maxTokens);
        }

        return buffer.ToArray();
    }

    // What every request of the load tool ends with: max_tokens, streaming with usage, EOS ignored.
    private static void WriteStreamingTail(Utf8JsonWriter writer, int maxTokens)
    {
        writer.WriteNumber("max_tokens", maxTokens);
        writer.WriteBoolean("stream", true);
        writer.WriteStartObject("stream_options");
        writer.WriteBoolean("include_usage", true);
        writer.WriteEndObject();
        writer.WriteBoolean("ignore_eos", true);
        writer.WriteEndObject();
    }

    private async Task<RequestResult> SendBodyAsync(Uri endpoint, byte[] body, CancellationToken cancellationToken)
    {
        long sent = _time.GetTimestamp();
        double start = _time.GetElapsedTime(_origin, sent).TotalSeconds;
        double Since() => _time.GetElapsedTime(sent).TotalSeconds;
        var exchange = new ExchangeBytes();
        string? resent = null;
        RequestResult Failed(RequestOutcome outcome, string error, int? status = null) =>
            new() { Outcome = outcome, Start = start, EndToEnd = Since(), Error = error, StatusCode = status, Retries = resent is null ? 0 : 1, RetryError = resent };

        try
        {
            HttpResponseMessage response;
            try
            {
                response = await SendOnceAsync(_http, endpoint, body, exchange, resend: false, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (IsTransportFailure(e) && !cancellationToken.IsCancellationRequested && exchange.RequestWritten && exchange.ResponseBytes == 0)
            {
                // The connection closed (or was reset) after the request went out and before one byte of the
                // response came back, so the server cannot have started streaming this request: a kept-alive
                // connection that the server closed without saying Connection: close (llama-server after every
                // streamed answer; others when idle or past a request limit) as the request crossed it.
                // HttpClient resends that itself only for requests without a body. Send it again, once, on a new connection, and count it; a request that got any byte of
                // a response is never resent: its failure stays a failure.
                resent = Describe(e);
                exchange = new ExchangeBytes();
                response = await SendOnceAsync(_fresh, endpoint, body, exchange, resend: true, cancellationToken).ConfigureAwait(false);
            }

            using HttpResponseMessage _ = response;
            using HttpRequestMessage? __ = response.RequestMessage;
            int status = (int)response.StatusCode;
            if (!response.IsSuccessStatusCode)
            {
                string errorBody = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
                RequestOutcome outcome = status is 429 or 503 ? RequestOutcome.Rejected : RequestOutcome.Error;
                return Failed(outcome, string.Create(CultureInfo.InvariantCulture, $"HTTP {status}: {ErrorMessage(errorBody)}"), status);
            }

            await using Stream stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            var text = new StringBuilder();
            var gaps = new List<double>();
            double? ttft = null;
            double last = 0;
            int chunks = 0;
            int? completionTokens = null, promptTokens = null;
            bool done = false;
            await foreach (SseItem<string> item in SseParser.Create(stream).EnumerateAsync(cancellationToken).ConfigureAwait(false))
            {
                string data = item.Data;
                if (data == "[DONE]")
                {
                    done = true;
                    break;
                }

                if (string.IsNullOrWhiteSpace(data))
                {
                    continue;
                }

                double now = Since();
                using JsonDocument doc = JsonDocument.Parse(data);
                JsonElement root = doc.RootElement;
                if (root.TryGetProperty("error", out JsonElement error) && error.ValueKind != JsonValueKind.Null)
                {
                    return Failed(RequestOutcome.Error, "error event: " + ErrorMessage(data));
                }

                if (root.TryGetProperty("choices", out JsonElement choices) && choices.ValueKind == JsonValueKind.Array)
                {
                    foreach (JsonElement choice in choices.EnumerateArray())
                    {
                        // Chat chunks carry delta.content; completion chunks carry text.
                        JsonElement content = default;
                        bool found = (choice.TryGetProperty("delta", out JsonElement delta) && delta.ValueKind == JsonValueKind.Object
                                && delta.TryGetProperty("content", out content))
                            || choice.TryGetProperty("text", out content);
                        if (found && content.ValueKind == JsonValueKind.String && content.GetString() is { Length: > 0 } piece)
                        {
                            text.Append(piece);
                            if (ttft is null)
                            {
                                ttft = now;
                            }
                            else
                            {
                                gaps.Add(now - last);
                            }

                            last = now;
                            chunks++;
                        }
                    }
                }

                if (root.TryGetProperty("usage", out JsonElement usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    if (usage.TryGetProperty("completion_tokens", out JsonElement c) && c.ValueKind == JsonValueKind.Number)
                    {
                        completionTokens = c.GetInt32();
                    }

                    if (usage.TryGetProperty("prompt_tokens", out JsonElement p) && p.ValueKind == JsonValueKind.Number)
                    {
                        promptTokens = p.GetInt32();
                    }
                }
            }

            if (!done)
            {
                return Failed(RequestOutcome.Error, "stream ended without data: [DONE]");
            }

            double endToEnd = Since();
            await DrainAsync(stream, cancellationToken).ConfigureAwait(false);
            return new RequestResult
            {
                Outcome = RequestOutcome.Ok,
                Start = start,
                Ttft = ttft,
                EndToEnd = endToEnd,
                OutputTokens = completionTokens ?? chunks,
                PromptTokens = promptTokens,
                TokenGaps = gaps,
                Text = text.ToString(),
                Retries = resent is null ? 0 : 1,
                RetryError = resent,
            };
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e) when (IsTransportFailure(e))
        {
            return Failed(RequestOutcome.Error, string.Create(CultureInfo.InvariantCulture, $"{Describe(e)}, after {exchange.ResponseBytes} response bytes"));
        }
    }

    /// <summary>Sends the request and returns when its response headers are in; the caller disposes the request with the response.</summary>
    private static async Task<HttpResponseMessage> SendOnceAsync(HttpClient http, Uri endpoint, byte[] body, ExchangeBytes exchange, bool resend, CancellationToken cancellationToken)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, endpoint) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.Accept.ParseAdd("text/event-stream");
        request.Headers.ConnectionClose = resend ? true : null;

        // Flows into the connection's write of this request (this method's async flow), not out of it.
        ExchangeBytes.Current.Value = exchange;
        return await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads what follows <c>data: [DONE]</c> (the chunked body's last chunk) so that the connection is back in
    /// the pool before this request's sender sends its next one: left to the response's disposal, that read
    /// happens in the background, and the next request opens another connection meanwhile. Bounded: a server
    /// that keeps the stream open after [DONE] costs this much, and the connection is closed.
    /// </summary>
    private static async Task DrainAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var drain = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        drain.CancelAfter(DrainTimeout);
        try
        {
            await stream.CopyToAsync(Stream.Null, drain.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (IsTransportFailure(e) && !cancellationToken.IsCancellationRequested)
        {
            // The answer was complete; what came after [DONE] does not change it.
        }
    }

    private static bool IsTransportFailure(Exception e) =>
        e is HttpRequestException or IOException or JsonException or OperationCanceledException or FormatException;

    /// <summary>The exception's type and message, with its innermost cause.</summary>
    private static string Describe(Exception e)
    {
        Exception inner = e;
        while (inner.InnerException is not null && inner is HttpRequestException or IOException)
        {
            inner = inner.InnerException;
        }

        string message = inner == e ? e.Message : $"{e.Message} ({inner.Message})";
        return $"{e.GetType().Name}: {message}";
    }

    /// <summary>An OpenAI error object's message, or the body itself, shortened.</summary>
    private static string ErrorMessage(string body)
    {
        string message = body;
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("error", out JsonElement e))
            {
                message = e.ValueKind == JsonValueKind.Object && e.TryGetProperty("message", out JsonElement m) && m.ValueKind == JsonValueKind.String
                    ? m.GetString()!
                    : e.ToString();
            }
        }
        catch (JsonException)
        {
        }

        message = message.ReplaceLineEndings(" ").Trim();
        return message.Length > MaxErrorBody ? message[..MaxErrorBody] + "..." : message;
    }

    public void Dispose()
    {
        _http.Dispose();
        _fresh.Dispose();
    }
}

using System.Globalization;
using System.Net;
using System.Net.ServerSentEvents;
using System.Text;
using System.Text.Json;

namespace Dynamo.Load.Client;

/// <summary>
/// Sends one streaming chat completion (<c>POST {url}/v1/chat/completions</c>, <c>stream</c>,
/// <c>stream_options.include_usage</c>, <c>max_tokens</c>, <c>ignore_eos</c>) and times its SSE chunks.
/// HTTP 429 and 503 are rejections; every other failure is an error. Never throws except for cancellation.
/// </summary>
internal sealed class ChatStreamClient : IDisposable
{
    private const int MaxErrorBody = 300;
    private readonly HttpClient _http;
    private readonly Uri _endpoint;
    private readonly Uri _completions;
    private readonly string _model;
    private readonly TimeProvider _time;
    private readonly long _origin;

    /// <param name="baseUrl">The server, e.g. http://localhost:8000 (a trailing /v1 is accepted).</param>
    /// <param name="model">The model field of every request.</param>
    /// <param name="time">Clock of all measurements.</param>
    /// <param name="origin">Timestamp (<paramref name="time"/>) that request start times count from.</param>
    public ChatStreamClient(string baseUrl, string model, TimeProvider time, long origin)
    {
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
        _http = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = int.MaxValue,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            AutomaticDecompression = DecompressionMethods.None,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

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
        RequestResult Failed(RequestOutcome outcome, string error, int? status = null) =>
            new() { Outcome = outcome, Start = start, EndToEnd = Since(), Error = error, StatusCode = status };

        using var request = new HttpRequestMessage(HttpMethod.Post, endpoint)
        {
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        request.Headers.Accept.ParseAdd("text/event-stream");
        try
        {
            using HttpResponseMessage response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
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

            return new RequestResult
            {
                Outcome = RequestOutcome.Ok,
                Start = start,
                Ttft = ttft,
                EndToEnd = Since(),
                OutputTokens = completionTokens ?? chunks,
                PromptTokens = promptTokens,
                TokenGaps = gaps,
                Text = text.ToString(),
            };
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or JsonException or OperationCanceledException or FormatException)
        {
            Exception inner = e;
            while (inner.InnerException is not null && inner is HttpRequestException or IOException)
            {
                inner = inner.InnerException;
            }

            string message = inner == e ? e.Message : $"{e.Message} ({inner.Message})";
            return Failed(RequestOutcome.Error, $"{e.GetType().Name}: {message}");
        }
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

    public void Dispose() => _http.Dispose();
}

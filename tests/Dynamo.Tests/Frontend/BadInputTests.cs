using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using Dynamo.Frontend;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// 10,000 generated requests (<see cref="BadRequestGenerator"/>) against a real frontend and echo worker over
/// HTTP, 16 at a time: no 5xx, no request without an answer, every refusal an OpenAI error object, every
/// success a complete response; the server still live afterwards.
/// </summary>
public class BadInputTests
{
    private const int Seed = 20260701;

    [Theory]
    [InlineData(false, 10_000)]
    [InlineData(true, 2_000)]
    public async Task GeneratedBadRequests_No5xxNoCrashAndEveryRefusalAnOpenAiError(bool processor, int cases)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { MaxRequestBodyBytes = 1 << 20 }, processor: processor);
        await h.AddWorkerAsync(FrontendHarness.Echo(), contextLength: 128);
        var failures = new ConcurrentQueue<string>();
        var statuses = new ConcurrentDictionary<int, int>();
        var clock = Stopwatch.StartNew();

        await Parallel.ForEachAsync(Enumerable.Range(0, cases), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, cancellationToken) =>
        {
            BadRequest request = BadRequestGenerator.Create(Seed, i);
            string? problem;
            int status = 0;
            try
            {
                (status, problem) = await SendAsync(h.Http, request, cancellationToken);
            }
            catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
            {
                problem = $"no answer: {e.GetBaseException().Message}";
            }

            statuses.AddOrUpdate(status, 1, (_, n) => n + 1);
            if (problem is not null)
            {
                failures.Enqueue($"case {i} ({request.Method} {request.Path}, {request.Mutations}): HTTP {status}: {problem}");
            }
        });

        Assert.True(failures.IsEmpty, $"{failures.Count} of {cases} cases failed (seed {Seed}), e.g.:\n{string.Join("\n", failures.Take(10))}");
        Assert.Equal(System.Net.HttpStatusCode.OK, (await h.Http.GetAsync("/live")).StatusCode);
        Assert.True(statuses.Keys.Count(s => s >= 400) >= 4, $"the generator hardly varies the outcome: {string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}"))}");
        Assert.True(statuses.GetValueOrDefault(200) > cases / 50, "almost no generated request was valid: the mutations hide every route");
        Assert.True(clock.Elapsed < TimeSpan.FromMinutes(5), $"{cases} requests took {clock.Elapsed}");
    }

    /// <summary>Sends the request; the problem with the answer, or null.</summary>
    private static async Task<(int Status, string? Problem)> SendAsync(HttpClient http, BadRequest request, CancellationToken cancellationToken)
    {
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), request.Path);
        if (request.Method != "GET")
        {
            message.Content = new ByteArrayContent(request.Body);
            message.Content.Headers.ContentType = request.ContentType is null ? null : MediaTypeHeaderValue.Parse(request.ContentType);
        }

        using HttpResponseMessage response = await http.SendAsync(message, cancellationToken);
        int status = (int)response.StatusCode;
        string body = await response.Content.ReadAsStringAsync(cancellationToken);
        string type = response.Content.Headers.ContentType?.MediaType ?? "";
        if (status >= 500)
        {
            return (status, $"server error {Snippet(body)}");
        }

        if (status >= 300)
        {
            return (status, type == "application/json" && IsErrorObject(body) ? null : $"not an OpenAI error object ({type}): {Snippet(body)}");
        }

        if (type == "text/event-stream")
        {
            string[] data = [.. body.Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => l[6..])];
            return (status, data.Length > 0 && data[^1] == "[DONE]" && data[..^1].All(d => IsJson(d) && !d.StartsWith("{\"error\"", StringComparison.Ordinal))
                ? null : $"incomplete or failed stream: {Snippet(body)}");
        }

        // GET / is the web page (README "The web page"): HTML, not an API answer.
        if (request.Method == "GET" && request.Path == "/")
        {
            return (status, type == "text/html" && body.StartsWith("<!DOCTYPE html>", StringComparison.Ordinal) ? null : $"GET / is not the web page ({type}): {Snippet(body)}");
        }

        return (status, type == "application/json" && IsJson(body) ? null : $"2xx without a JSON body ({type}): {Snippet(body)}");
    }

    private static bool IsErrorObject(string body)
    {
        try
        {
            using JsonDocument json = JsonDocument.Parse(body);
            return json.RootElement.TryGetProperty("error", out JsonElement e)
                && e.TryGetProperty("message", out JsonElement m) && m.ValueKind == JsonValueKind.String && m.GetString()!.Length > 0
                && e.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String
                && e.TryGetProperty("param", out _) && e.TryGetProperty("code", out _);
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool IsJson(string text)
    {
        try
        {
            using JsonDocument json = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static string Snippet(string body) => body.Length <= 300 ? body : body[..300] + "...";
}

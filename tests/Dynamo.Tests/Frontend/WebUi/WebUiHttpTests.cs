using System.Net;
using System.Text;
using System.Text.Json;

namespace Dynamo.Tests.Frontend.WebUi;

/// <summary>The web page at / and GET /v1/dynamo/status over HTTP, against `dynamo run` with a real engine and model.</summary>
[Trait("Category", "Slow")]
public class WebUiHttpTests
{
    [Fact]
    public async Task Page_ServedAtRootAndStatusAfterRequests_HoldsRealFigures()
    {
        await using WebUiServer server = await WebUiServer.StartAsync();

        using HttpResponseMessage page = await server.Http.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        string html = await page.Content.ReadAsStringAsync();
        Assert.Contains("id=\"send\"", html, StringComparison.Ordinal);
        Assert.Contains("/v1/dynamo/status", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<script src", html, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("https://", html, StringComparison.Ordinal);

        for (int i = 0; i < 3; i++)
        {
            using var content = new StringContent("""{"model":"tiny-chat","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stream":true}""", Encoding.UTF8, "application/json");
            using HttpResponseMessage answer = await server.Http.PostAsync("/v1/chat/completions", content);
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            Assert.Contains("[DONE]", await answer.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // Load reports come every second and the history gains a point every second: wait for both, bounded.
        JsonElement status = default;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            status = JsonDocument.Parse(await server.Http.GetStringAsync("/v1/dynamo/status")).RootElement;
            bool loaded = status.GetProperty("workers").EnumerateArray().Any(w => w.GetProperty("running").ValueKind == JsonValueKind.Number);
            bool charted = status.GetProperty("history").EnumerateArray().Any(p => p.GetProperty("tokens_per_second").GetDouble() > 0);
            if ((loaded && charted) || DateTime.UtcNow > deadline)
            {
                break;
            }

            await Task.Delay(100);
        }

        JsonElement model = Assert.Single(status.GetProperty("models").EnumerateArray());
        Assert.Equal("tiny-chat", model.GetProperty("name").GetString());
        Assert.True(model.GetProperty("has_chat_template").GetBoolean());
        JsonElement worker = Assert.Single(status.GetProperty("workers").EnumerateArray());
        Assert.Equal("tiny-chat", worker.GetProperty("model").GetString());
        Assert.Equal("aggregated", worker.GetProperty("role").GetString());
        Assert.Matches("^[0-9a-f]+$", worker.GetProperty("worker_id").GetString());
        Assert.Equal(3, worker.GetProperty("routed_requests").GetInt64());
        Assert.Equal(1.0, worker.GetProperty("routing_share").GetDouble());
        Assert.Equal(JsonValueKind.Number, worker.GetProperty("running").ValueKind);
        Assert.True(worker.GetProperty("kv_blocks_total").GetInt32() > 0, status.ToString());
        Assert.InRange(worker.GetProperty("kv_usage_percent").GetDouble(), 0, 100);
        Assert.InRange(worker.GetProperty("prefix_hit_rate").GetDouble(), 0, 1);
        Assert.True(worker.GetProperty("tokens_per_second").GetDouble() >= 0);
        Assert.InRange(status.GetProperty("output_tokens").GetInt64(), 3, 24);
        Assert.Equal(3, status.GetProperty("responses").GetInt64());
        Assert.True(status.GetProperty("ttft_mean_s").GetDouble() > 0, status.ToString());
        JsonElement[] history = [.. status.GetProperty("history").EnumerateArray()];
        Assert.Contains(history, p => p.GetProperty("tokens_per_second").GetDouble() > 0);
        Assert.Contains(history, p => p.GetProperty("ttft_s").ValueKind == JsonValueKind.Number && p.GetProperty("ttft_s").GetDouble() > 0);

        using HttpResponseMessage unknown = await server.Http.GetAsync("/v1/nothing-here");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("unknown_route", JsonDocument.Parse(await unknown.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Page_NoWebUiFlag_RootAndStatusAre404WithOpenAiErrors()
    {
        await using Dynamo.Tests.Infrastructure.DynamoProcess run = Dynamo.Tests.Infrastructure.DynamoProcess.Start(["run", "out=echo", "--http-port", "0", "--http-host", "127.0.0.1", "--no-web-ui"]);
        await run.WaitForLineAsync("run: ready: ");
        var address = new Uri(System.Text.RegularExpressions.Regex.Match(run.Output, @"run: ready: (http://127\.0\.0\.1:\d+/)").Groups[1].Value);
        using var http = new HttpClient { BaseAddress = address };

        foreach (string path in new[] { "/", "/v1/dynamo/status" })
        {
            using HttpResponseMessage response = await http.GetAsync(path);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("unknown_route", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        }

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/v1/models")).StatusCode);
    }
}

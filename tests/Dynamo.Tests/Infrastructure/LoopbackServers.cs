using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Dynamo.Tests.Infrastructure;

/// <summary>nats-server, etcd and a frontend on loopback, with what the process tests ask of them.</summary>
internal sealed class LoopbackServers : IAsyncDisposable
{
    private LoopbackServers(NatsServer nats, EtcdServer etcd, DynamoProcess frontend, HttpClient http)
    {
        Nats = nats;
        Etcd = etcd;
        Frontend = frontend;
        Http = http;
        Environment = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
    }

    public NatsServer Nats { get; }

    public EtcdServer Etcd { get; }

    public DynamoProcess Frontend { get; }

    public HttpClient Http { get; }

    public Dictionary<string, string> Environment { get; }

    /// <summary>A loopback port free a moment ago.</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    public static async Task<LoopbackServers> StartAsync(string[]? frontendArgs = null)
    {
        NatsServer nats = await NatsServer.StartAsync();
        EtcdServer etcd = await EtcdServer.StartAsync();
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        DynamoProcess frontend = DynamoProcess.Start(
            ["frontend", "--http-port", port.ToString(CultureInfo.InvariantCulture), .. frontendArgs ?? []],
            new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint });
        await frontend.WaitForLineAsync("frontend: listening");
        return new LoopbackServers(nats, etcd, frontend, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) });
    }

    public Task<string> CompleteAsync(string model, string prompt) =>
        PostTextAsync(JsonSerializer.Serialize(new { model, prompt, max_tokens = 30, temperature = 0 }));

    /// <summary>Posts a completions body; returns the first choice's text.</summary>
    public async Task<string> PostTextAsync(string body)
    {
        using HttpResponseMessage r = await Http.PostAsync("v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    /// <summary>A greedy chat completion through the frontend; returns the answer's text (or, when it must fail, the error body).</summary>
    public async Task<string> ChatAsync(string model, string question, bool expectSuccess = true)
    {
        string body = JsonSerializer.Serialize(new { model, messages = new[] { new { role = "user", content = question } }, max_tokens = 24, temperature = 0, ignore_eos = true });
        using HttpResponseMessage r = await Http.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        string text = await r.Content.ReadAsStringAsync();
        if (!expectSuccess)
        {
            Assert.False(r.IsSuccessStatusCode, text);
            return text;
        }

        Assert.True(r.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    /// <summary>Waits until the frontend counts <paramref name="count"/> requests in flight.</summary>
    public async Task WaitForInflightAsync(int count)
    {
        var until = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            string metrics = await Http.GetStringAsync("metrics");
            double inflight = metrics.Split('\n')
                .Where(l => l.StartsWith("dynamo_frontend_inflight_requests{", StringComparison.Ordinal))
                .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
            if (inflight >= count)
            {
                return;
            }

            Assert.True(DateTime.UtcNow < until, "no request in flight within 60 s");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until the frontend's /health lists exactly these models with these instance counts.</summary>
    public async Task WaitForModelsAsync(Dictionary<string, int> expected)
    {
        var until = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            // 503 while no model is served: the body still lists what there is.
            using HttpResponseMessage health = await Http.GetAsync("health");
            string json = await health.Content.ReadAsStringAsync();
            JsonElement root = JsonDocument.Parse(json).RootElement;
            var seen = root.TryGetProperty("models", out JsonElement models)
                ? models.EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!, m => m.GetProperty("instances").GetArrayLength())
                : [];
            if (seen.Count == expected.Count && expected.All(e => seen.TryGetValue(e.Key, out int n) && n == e.Value))
            {
                return;
            }

            Assert.True(DateTime.UtcNow < until, $"the frontend's /health: {json}");
            await Task.Delay(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Frontend.DisposeAsync();
        await Etcd.DisposeAsync();
        await Nats.DisposeAsync();
    }
}

using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// KV-aware routing end to end with real engines: `dynamo frontend --router-mode kv` and two `dynamo
/// worker` processes running the built-in inference engine, over real nats-server and etcd.
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class KvRoutingProcessTests
{
    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [GeneratedRegex(@"^(dynamo_component_[a-z_]+)\{[^}]*\} ([0-9.eE+-]+)$", RegexOptions.Multiline)]
    private static partial Regex MetricLine();

    private static async Task<Dictionary<string, double>> ScrapeAsync(HttpClient http)
    {
        string text = await http.GetStringAsync("metrics");
        // Per metric, the sum over its series (a metric with a label such as reason has several).
        return MetricLine().Matches(text).GroupBy(m => m.Groups[1].Value)
            .ToDictionary(g => g.Key, g => g.Sum(m => double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)));
    }

    [GeneratedRegex(@"^dynamo_frontend_router_indexed_blocks\{endpoint=""dynamo\.backend\.generate""\} ([0-9.eE+-]+)$", RegexOptions.Multiline)]
    private static partial Regex IndexedBlocksLine();

    private static double RouterIndexedBlocks(string metrics) =>
        IndexedBlocksLine().Match(metrics) is { Success: true } m ? double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : 0;

    [Fact]
    public async Task KvFrontend_TwoRealWorkers_SharedPrefixGoesToItsHolderAndSkipsThoseBlocks()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
        int port = FreePort();
        int[] systemPorts = [FreePort(), FreePort()];
        await using DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", port.ToString(), "--http-host", "127.0.0.1", "--router-mode", "kv"], env);
        await frontend.WaitForLineAsync("frontend: listening");
        await using DynamoProcess w0 = DynamoProcess.Start(
            ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1", "--block-size", "16", "--system-port", systemPorts[0].ToString()], env);
        await using DynamoProcess w1 = DynamoProcess.Start(
            ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1", "--block-size", "16", "--system-port", systemPorts[1].ToString()], env);
        await w0.WaitForLineAsync("serving dynamo.backend.generate", 60);
        await w1.WaitForLineAsync("serving dynamo.backend.generate", 60);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
        HttpClient[] workers = [.. systemPorts.Select(p => new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{p}/") })];
        var until = DateTime.UtcNow.AddSeconds(30);
        // /health answers 503 until the frontend has seen a worker's card; it lists both once both are in.
        async Task<int> InstancesAsync()
        {
            using HttpResponseMessage health = await http.GetAsync("health");
            return JsonDocument.Parse(await health.Content.ReadAsStringAsync()).RootElement.GetProperty("models").EnumerateArray()
                .Sum(m => m.GetProperty("instances").GetArrayLength());
        }

        while (await InstancesAsync() < 2)
        {
            Assert.True(DateTime.UtcNow < until, "two workers never listed");
            await Task.Delay(100);
        }

        // 8 full blocks of shared prompt, then a request's own tokens.
        int[] shared = [.. Enumerable.Range(0, 128).Select(i => 3 + (i * 37 % 500))];
        async Task<JsonElement> CompleteAsync(int[] own)
        {
            string body = $"{{\"model\":\"tiny\",\"prompt\":[{string.Join(',', shared.Concat(own))}],\"max_tokens\":2,\"ignore_eos\":true}}";
            using HttpResponseMessage response = await http.PostAsync("v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
            string text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            return JsonDocument.Parse(text).RootElement.Clone();
        }

        JsonElement first = await CompleteAsync([7, 8, 9]);
        Assert.False(first.GetProperty("usage").TryGetProperty("prompt_tokens_details", out _));
        Dictionary<string, double>[] after1 = [await ScrapeAsync(workers[0]), await ScrapeAsync(workers[1])];
        int holder = after1[0]["dynamo_component_requests_total"] == 1 ? 0 : 1;
        Assert.Equal(1, after1[holder]["dynamo_component_requests_total"]);
        Assert.Equal(0, after1[1 - holder]["dynamo_component_requests_total"]);

        // Once the first request's KV events reach the router (its index holds the 8 shared blocks, as its own
        // gauge says), requests sharing the prefix go to that worker and skip the shared blocks there.
        while (RouterIndexedBlocks(await http.GetStringAsync("metrics")) < 8)
        {
            Assert.True(DateTime.UtcNow < until.AddSeconds(30), "the router's index never held the first request's blocks");
            await Task.Delay(50);
        }

        for (int i = 0; i < 4; i++)
        {
            JsonElement next = await CompleteAsync([20 + i, 30 + i]);
            Assert.Equal(128, next.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
        }

        Dictionary<string, double>[] after = [await ScrapeAsync(workers[0]), await ScrapeAsync(workers[1])];
        Assert.Equal(5, after[holder]["dynamo_component_requests_total"]);
        Assert.Equal(0, after[1 - holder]["dynamo_component_requests_total"]);
        Assert.Equal(4 * 128, after[holder]["dynamo_component_prefix_cache_hits_total"] - after1[holder]["dynamo_component_prefix_cache_hits_total"]);
        foreach (HttpClient w in workers)
        {
            w.Dispose();
        }
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Data parallelism as the guides start it (SGLang's --tp N --dp-size N --enable-dp-attention, one command per node)
/// over real nats-server and etcd with the frontend's KV router: each replica is a routing target (worker, dp_rank);
/// both serve; a shared prefix goes back to the rank that caches it; the text is a one-engine worker's.
/// (That an idle rank takes the next request while the other is busy is also pinned in-process, by DataParallelRoutingTests.)
/// </summary>
[Trait("Category", "Slow")]
public sealed class DataParallelProcessTests
{
    private static readonly string[] Prompts = ["Once upon a time", "The little dog", "Tom and Sue went to the park and"];

    private static string[] Common(string name) =>
        ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", name, "--kv-cache-memory", "16000000", "--lease-ttl", "3"];

    private static string Port(int port) => port.ToString(CultureInfo.InvariantCulture);

    [Fact]
    public async Task OneNode_TwoReplicas_PrefixReturnsToItsRank_TextEqualsOneEngine()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync(["--router-mode", "kv"]);
        int metrics = LoopbackServers.FreePort();
        await using DynamoProcess one = DynamoProcess.Start([.. Common("one"), "--threads", "1"], s.Environment);
        await using DynamoProcess dp = DynamoProcess.Start(
            [.. Common("dp"), "--tp", "2", "--dp-size", "2", "--enable-dp-attention", "--threads", "2", "--system-port", Port(metrics)], s.Environment);
        await one.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await dp.WaitForLineAsync("serving dynamo.backend.generate", 120);
        Assert.Contains("data parallelism: 2 engine replicas here (ranks 0..1 of 2)", dp.Output, StringComparison.Ordinal);
        Assert.Contains("over 2 data-parallel ranks 0..1", dp.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("--enable-dp-attention is accepted", dp.Output, StringComparison.Ordinal);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["one"] = 1, ["dp"] = 1 });

        // Each replica is the whole model: greedy text equals a one-engine worker's, alone and batched.
        foreach (string prompt in Prompts)
        {
            Assert.Equal(await s.CompleteAsync("one", prompt), await s.CompleteAsync("dp", prompt));
        }

        // A long prompt lands on one rank; the same prefix again goes back there and hits its cache, not the other's.
        string prefix = string.Join(' ', Enumerable.Range(0, 12).Select(i => $"word{i}"));
        double indexed = await RouterIndexedAsync(s);
        double[] prompts0 = await PerRankAsync(metrics, "dynamo_component_dp_rank_prompt_tokens_total");
        await s.PostTextAsync(JsonSerializer.Serialize(new { model = "dp", prompt = prefix + " first", max_tokens = 2, temperature = 0 }));
        double[] prompts1 = await PerRankAsync(metrics, "dynamo_component_dp_rank_prompt_tokens_total");
        int holder = prompts1[0] > prompts0[0] ? 0 : 1;
        Assert.True(prompts1[holder] > prompts0[holder] && prompts1[1 - holder] == prompts0[1 - holder], string.Join(",", prompts1));
        await WaitForAsync(async () => await RouterIndexedAsync(s) >= indexed + 4, "the router indexing the long prompt's blocks");
        double[] hits0 = await PerRankAsync(metrics, "dynamo_component_dp_rank_prefix_cache_hits_total");
        await s.PostTextAsync(JsonSerializer.Serialize(new { model = "dp", prompt = prefix + " second", max_tokens = 2, temperature = 0 }));
        double[] hits1 = await PerRankAsync(metrics, "dynamo_component_dp_rank_prefix_cache_hits_total");
        Assert.True(hits1[holder] - hits0[holder] >= 64, $"rank {holder} hits {hits0[holder]} -> {hits1[holder]}");
        Assert.Equal(hits0[1 - holder], hits1[1 - holder]);

        dp.Terminate();
        Assert.Equal(0, await dp.WaitForExitAsync(60));
    }

    [Fact]
    public async Task TwoNodes_GuideCommandLines_EachNodeServesItsRank_BothServe()
    {
        // Mocker engines (simulated time, 8 ms a step): a 2,000-token request holds its rank for seconds, whatever the machine.
        await using LoopbackServers s = await LoopbackServers.StartAsync(["--router-mode", "kv"]);
        string init = $"127.0.0.1:{LoopbackServers.FreePort()}";
        int[] ports = [LoopbackServers.FreePort(), LoopbackServers.FreePort()];
        string[] guide = ["--engine", "mocker", "--tp", "2", "--dp-size", "2", "--enable-dp-attention", "--nnodes", "2", "--dist-init-addr", init, "--trust-remote-code"];
        await using DynamoProcess node0 = DynamoProcess.Start([.. Common("dp"), .. guide, "--node-rank", "0", "--system-port", Port(ports[0])], s.Environment);
        await using DynamoProcess node1 = DynamoProcess.Start([.. Common("dp"), .. guide, "--node-rank", "1", "--system-port", Port(ports[1])], s.Environment);
        await node0.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await node1.WaitForLineAsync("serving dynamo.backend.generate", 120);
        Assert.Contains("1 engine replicas here (ranks 0..0 of 2)", node0.Output, StringComparison.Ordinal);
        Assert.Contains("1 engine replicas here (ranks 1..1 of 2)", node1.Output, StringComparison.Ordinal);
        Assert.Contains("--dist-init-addr is not used", node1.Output, StringComparison.Ordinal);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["dp"] = 2 });

        // A long request holds one node's rank (its stream stays open); the next request goes to the other node's rank.
        using var longRequest = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        {
            Content = new StringContent("""{"model":"dp","prompt":"Once upon a time","max_tokens":2000,"ignore_eos":true,"stream":true}""", Encoding.UTF8, "application/json"),
        };
        using HttpResponseMessage streaming = await s.Http.SendAsync(longRequest, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await streaming.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync());
        double[] running = [await RankGaugeAsync(ports[0], 0, "running_requests"), await RankGaugeAsync(ports[1], 1, "running_requests")];
        int holder = Array.IndexOf(running, 1.0);
        Assert.True(holder >= 0 && running[1 - holder] == 0, $"running: {string.Join(",", running)}");
        double[] before = [await RankGaugeAsync(ports[0], 0, "requests_finished_total"), await RankGaugeAsync(ports[1], 1, "requests_finished_total")];
        await s.PostTextAsync("""{"model":"dp","prompt":"zebra quantum violet","max_tokens":4}""");
        Assert.Equal(before[1 - holder] + 1, await RankGaugeAsync(ports[1 - holder], 1 - holder, "requests_finished_total"));
        Assert.Equal(before[holder], await RankGaugeAsync(ports[holder], holder, "requests_finished_total"));
        Assert.Equal(1, await RankGaugeAsync(ports[holder], holder, "running_requests"));

        // A node leaving takes its rank out of discovery; the other node's rank serves on.
        node1.Terminate();
        Assert.Equal(0, await node1.WaitForExitAsync(60));
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["dp"] = 1 });
        Assert.NotEmpty(await s.PostTextAsync("""{"model":"dp","prompt":"after","max_tokens":4}"""));
    }

    private static async Task<double> RankGaugeAsync(int port, int rank, string gauge)
    {
        using var http = new HttpClient();
        return Labeled(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics"), "dynamo_component_dp_rank_" + gauge, rank);
    }

    /// <summary>A per-rank counter of a two-rank worker, by rank.</summary>
    private static async Task<double[]> PerRankAsync(int port, string name)
    {
        using var http = new HttpClient();
        string text = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        return [Labeled(text, name, 0), Labeled(text, name, 1)];
    }

    private static double Labeled(string metrics, string name, int rank)
    {
        string label = $"dp_rank=\"{rank}\"";
        string? line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith(name + "{", StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal));
        Assert.True(line is not null, $"no {name}{{{label}}} in:\n{metrics}");
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }

    private static async Task<double> RouterIndexedAsync(LoopbackServers s) =>
        PrometheusText.Value(await s.Http.GetStringAsync("metrics"), "dynamo_frontend_router_indexed_blocks");

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < until, $"gave up waiting: {what}");
            await Task.Delay(50);
        }
    }
}

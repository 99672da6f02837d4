using System.Globalization;
using System.Text;
using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Data parallelism as the guides start it (SGLang's --tp N --dp-size N --enable-dp-attention, one command per node)
/// over real nats-server and etcd with the frontend's KV router: each replica is a routing target (worker, dp_rank);
/// both serve; a shared prefix goes back to the rank that caches it; the text is a one-engine worker's.
/// </summary>
[Trait("Category", "Slow")]
public sealed class DataParallelProcessTests
{
    private static readonly string[] Prompts = ["Once upon a time", "The little dog", "Tom and Sue went to the park and"];

    private static string[] Common(string name) =>
        ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", name, "--kv-cache-memory", "16000000", "--lease-ttl", "3"];

    private static string Port(int port) => port.ToString(CultureInfo.InvariantCulture);

    [Fact]
    public async Task OneNode_TwoReplicas_BothServe_PrefixReturnsToItsRank_TextEqualsOneEngine()
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

        // While one rank decodes a long request, the router sends the next to the other rank: both serve.
        double[] before = await PerRankAsync(metrics, "dynamo_component_dp_rank_requests_finished_total");
        using var longRequest = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        {
            Content = new StringContent("""{"model":"dp","prompt":"Once upon a time","max_tokens":200,"ignore_eos":true,"stream":true,"temperature":0}""", Encoding.UTF8, "application/json"),
        };
        using HttpResponseMessage streaming = await s.Http.SendAsync(longRequest, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await streaming.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync());
        await s.CompleteAsync("dp", "zebra quantum violet");
        string rest = await reader.ReadToEndAsync();
        Assert.Contains("[DONE]", rest, StringComparison.Ordinal);
        double[] after = await PerRankAsync(metrics, "dynamo_component_dp_rank_requests_finished_total");
        Assert.Equal([1, 1], after.Zip(before, (a, b) => a - b));

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
        await using LoopbackServers s = await LoopbackServers.StartAsync(["--router-mode", "kv"]);
        string init = $"127.0.0.1:{LoopbackServers.FreePort()}";
        int[] ports = [LoopbackServers.FreePort(), LoopbackServers.FreePort()];
        string[] guide = ["--tp", "2", "--dp-size", "2", "--enable-dp-attention", "--nnodes", "2", "--dist-init-addr", init, "--threads", "1", "--trust-remote-code"];
        await using DynamoProcess one = DynamoProcess.Start([.. Common("one"), "--threads", "1"], s.Environment);
        await using DynamoProcess node0 = DynamoProcess.Start([.. Common("dp"), .. guide, "--node-rank", "0", "--system-port", Port(ports[0])], s.Environment);
        await using DynamoProcess node1 = DynamoProcess.Start([.. Common("dp"), .. guide, "--node-rank", "1", "--system-port", Port(ports[1])], s.Environment);
        foreach (DynamoProcess w in new[] { one, node0, node1 })
        {
            await w.WaitForLineAsync("serving dynamo.backend.generate", 120);
        }

        Assert.Contains("1 engine replicas here (ranks 1..1 of 2)", node1.Output, StringComparison.Ordinal);
        Assert.Contains("--dist-init-addr is not used", node1.Output, StringComparison.Ordinal);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["one"] = 1, ["dp"] = 2 });
        string expected = await s.CompleteAsync("one", Prompts[2]);
        Assert.Equal(expected, await s.CompleteAsync("dp", Prompts[2]));

        // A long request holds one node's rank; the next request goes to the other node's.
        double[] before = [await RankFinishedAsync(ports[0], 0), await RankFinishedAsync(ports[1], 1)];
        using var longRequest = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        {
            Content = new StringContent("""{"model":"dp","prompt":"Once upon a time","max_tokens":200,"ignore_eos":true,"stream":true,"temperature":0}""", Encoding.UTF8, "application/json"),
        };
        using HttpResponseMessage streaming = await s.Http.SendAsync(longRequest, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await streaming.Content.ReadAsStreamAsync());
        Assert.StartsWith("data: ", await reader.ReadLineAsync());
        await s.CompleteAsync("dp", "zebra quantum violet");
        Assert.Contains("[DONE]", await reader.ReadToEndAsync(), StringComparison.Ordinal);
        Assert.Equal(before[0] + 1, await RankFinishedAsync(ports[0], 0));
        Assert.Equal(before[1] + 1, await RankFinishedAsync(ports[1], 1));

        node1.Terminate();
        Assert.Equal(0, await node1.WaitForExitAsync(60));
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["one"] = 1, ["dp"] = 1 });
        Assert.Equal(expected, await s.CompleteAsync("dp", Prompts[2]));
    }

    /// <summary>A per-rank counter of a two-rank worker, by rank.</summary>
    private static async Task<double[]> PerRankAsync(int port, string name)
    {
        using var http = new HttpClient();
        string text = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        return [Labeled(text, name, 0), Labeled(text, name, 1)];
    }

    private static async Task<double> RankFinishedAsync(int port, int rank)
    {
        using var http = new HttpClient();
        return Labeled(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics"), "dynamo_component_dp_rank_requests_finished_total", rank);
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

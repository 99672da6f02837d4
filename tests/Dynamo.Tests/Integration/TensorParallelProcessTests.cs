using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Tensor parallelism as users start it: `worker --tensor-parallel-size N` processes (the command starts its node's
/// other ranks) over real nats-server and etcd, on one host and across two network-namespace hosts. Greedy text equals
/// the whole model's; only rank 0 is in discovery; a lost rank takes the worker out of discovery.
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class TensorParallelProcessTests
{
    private static string Model => SharedData.Path("models", "tinystories-656k");

    private static readonly string[] Prompts = ["Once upon a time", "The little dog", "Tom and Sue went to the park and"];

    [SharedFact]
    public async Task OneHost_Tp2AndTp4_GreedyTextEqualsTp1_OnlyRankZeroRegistered()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync();
        await using DynamoProcess one = Worker(s, "one", 1);
        await using DynamoProcess two = Worker(s, "two", 2);
        await using DynamoProcess four = Worker(s, "four", 4);
        foreach (DynamoProcess w in new[] { one, two, four })
        {
            await w.WaitForLineAsync("serving dynamo.backend.generate", 120);
        }

        Assert.Equal(2, Regex.Matches(two.Output, "joined at").Count);
        Assert.Equal(4, Regex.Matches(four.Output, "joined at").Count);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["one"] = 1, ["two"] = 1, ["four"] = 1 });

        foreach (string prompt in Prompts)
        {
            string expected = await s.CompleteAsync("one", prompt);
            Assert.Equal(expected, await s.CompleteAsync("two", prompt));
            Assert.Equal(expected, await s.CompleteAsync("four", prompt));
        }

        // Together: concurrent requests batch on the ranks exactly as alone.
        string[] alone = await Task.WhenAll(Prompts.Select(p => s.CompleteAsync("one", p)));
        string[] together = await Task.WhenAll(Prompts.Concat(Prompts).Select(p => s.CompleteAsync("four", p)));
        Assert.Equal([.. alone, .. alone], together);

        // A clean stop: rank 0 drains and stops the others; every process exits 0.
        four.Terminate();
        Assert.Equal(0, await four.WaitForExitAsync(60));
        Assert.Contains("rank 3: rank 0 stopped", four.Output, StringComparison.Ordinal);
    }

    [SharedFact]
    public async Task KillRankOne_WorkerLeavesDiscovery_StreamEndsWithAnError_OneLineNamingTheRank()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync(["--migration-limit", "0"]);
        await using DynamoProcess two = Worker(s, "two", 2);
        await two.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["two"] = 1 });
        int rankOne = int.Parse(RankPid().Match(two.Output).Groups[1].Value, CultureInfo.InvariantCulture);

        // Rank 1 frozen, a request arrives and waits in rank 0's first pass for rank 1's part; then rank 1 dies.
        Signal("-STOP", rankOne);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        {
            Content = new StringContent("""{"model":"two","prompt":"Once upon a time","max_tokens":400,"ignore_eos":true,"stream":true,"temperature":0}""", Encoding.UTF8, "application/json"),
        };
        Task<HttpResponseMessage> sending = s.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await s.WaitForInflightAsync(1);
        Signal("-KILL", rankOne);
        using HttpResponseMessage response = await sending.WaitAsync(TimeSpan.FromSeconds(60));
        using var stream = new StreamReader(await response.Content.ReadAsStreamAsync());
        string rest = await stream.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(response.StatusCode != HttpStatusCode.OK || rest.Contains("\"error\"", StringComparison.Ordinal), $"{response.StatusCode}: {rest}");
        Assert.Equal(1, await two.WaitForExitAsync(60));
        Assert.Contains("rank 0: rank 1 is gone", two.Output, StringComparison.Ordinal);
        await s.WaitForModelsAsync(new Dictionary<string, int>());
    }

    [SharedFact]
    public async Task StopRankOne_SilentPastRankTimeout_WorkerLeavesDiscoveryNamingIt()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync();
        await using DynamoProcess two = DynamoProcess.Start(
            ["worker", "--model", Model, "--served-model-name", "two", "--tp", "2", "--threads", "1", "--rank-timeout", "10"], s.Environment);
        await two.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["two"] = 1 });
        int rankOne = int.Parse(RankPid().Match(two.Output).Groups[1].Value, CultureInfo.InvariantCulture);

        // Idle: rank 0 speaks every second; a frozen rank 1 stops answering, and 10 s later it counts as lost (10, not less:
        // a live rank on a loaded machine must never look silent).
        Signal("-STOP", rankOne);
        try
        {
            Assert.Equal(1, await two.WaitForExitAsync(60));
            Assert.Matches(@"rank 0: rank 1 [a-z ]+ for 10 s at step \d+ \(stalled", two.Output);
            await s.WaitForModelsAsync(new Dictionary<string, int>());
        }
        finally
        {
            Signal("-KILL", rankOne);
        }
    }

    [Fact]
    public async Task Disaggregated_Tp2PrefillWorker_Tp2AndTp1DecodeWorkers_TwoPartsEach_SameTextAsLocalPrefill()
    {
        await using LoopbackServers s = await LoopbackServers.StartAsync(["--router-mode", "kv"]);
        string[] common = ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1"];
        int decodePort = FreePort();
        await using DynamoProcess decode = DynamoProcess.Start(
            [.. common, "--tp", "2", "--system-port", decodePort.ToString(CultureInfo.InvariantCulture), "--max-local-prefill-length", "8", "--max-prefill-queue-size", "100"], s.Environment);
        await decode.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await using DynamoProcess prefill = DynamoProcess.Start([.. common, "--tp", "2", "--is-prefill-worker", "--disaggregation-mode", "prefill"], s.Environment);
        await prefill.WaitForLineAsync("serving dynamo.prefill.generate", 120);

        // A worker that says it serves is registered, but the frontend sees it only when its discovery watch brings it:
        // wait for both instances there, or the first request can find none (or only the prefill worker).
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["tiny"] = 2 });
        string body = JsonSerializer.Serialize(new { model = "tiny", prompt = string.Join(' ', Enumerable.Range(0, 12).Select(i => $"word{i}")), max_tokens = 16, temperature = 0 });

        // Until the frontend has seen the prefill worker's card the decode worker prefills itself: wait for a remote one.
        string remote;
        var until = DateTime.UtcNow.AddSeconds(60);
        do
        {
            remote = await s.PostTextAsync(body);
            Assert.True(DateTime.UtcNow < until, $"no remote prefill within 60 s:\n{decode.Output}");
        }
        while (await MetricAsync(decodePort, "dynamo_component_remote_prefills_total") < 1);

        // Each prefill rank pushed its own heads: two parts per remote prefill, assembled by the decode worker.
        await decode.WaitForLineAsync("bytes in 2 parts");
        Assert.Contains("prefilled on worker", decode.Output, StringComparison.Ordinal);
        Assert.Equal(2 * await MetricAsync(decodePort, "dynamo_component_remote_prefills_total"), await MetricAsync(decodePort, "dynamo_component_kv_transfer_received_parts_total"));

        // A TP=1 decode worker takes the TP=2 prefill's KV too; then, with no prefill worker, the TP=2 decode prefills itself.
        decode.Terminate();
        Assert.Equal(0, await decode.WaitForExitAsync(60));
        int onePort = FreePort();
        await using DynamoProcess one = DynamoProcess.Start(
            [.. common, "--system-port", onePort.ToString(CultureInfo.InvariantCulture), "--max-local-prefill-length", "8", "--max-prefill-queue-size", "100"], s.Environment);
        await one.WaitForLineAsync("serving dynamo.backend.generate", 120);

        // The old decode worker gone and the new one seen: until then the frontend knows only the prefill worker
        // ("Model 'tiny' has only prefill workers", which once failed this test on a loaded machine).
        await s.WaitForModelsAsync(new Dictionary<string, int> { ["tiny"] = 2 });
        until = DateTime.UtcNow.AddSeconds(60);
        string viaOne;
        do
        {
            viaOne = await s.PostTextAsync(body);
            Assert.True(DateTime.UtcNow < until, $"no remote prefill within 60 s:\n{one.Output}");
        }
        while (await MetricAsync(onePort, "dynamo_component_remote_prefills_total") < 1);

        Assert.Equal(2 * await MetricAsync(onePort, "dynamo_component_remote_prefills_total"), await MetricAsync(onePort, "dynamo_component_kv_transfer_received_parts_total"));
        await one.WaitForLineAsync("bytes in 2 parts");
        prefill.Terminate();
        Assert.Equal(0, await prefill.WaitForExitAsync(60));
        Assert.Equal(remote, viaOne);

        // With no prefill worker left, the TP=1 worker prefills itself: aggregated TP=1 gives the same text.
        Assert.Equal(remote, await s.PostTextAsync(body));
    }

    private static async Task<double> MetricAsync(int port, string name)
    {
        using var http = new HttpClient();
        string text = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        return text.Split('\n').Where(l => l.StartsWith(name, StringComparison.Ordinal) && (l.Length == name.Length || l[name.Length] is ' ' or '{'))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [SharedFact]
    public async Task Start_RankWithoutRankZero_OrWithAnotherModel_OneLineErrors()
    {
        string address = FreeAddress();
        await using (DynamoProcess alone = DynamoProcess.Start(["worker", "--model", Model, "--tp", "2", "--nnodes", "2", "--node-rank", "1", "--dist-init-addr", address, "--dist-timeout", "2"]))
        {
            Assert.NotEqual(0, await alone.WaitForExitAsync(60));
            Assert.Contains($"rank 1: no rank 0 at {address} after 2 s", alone.Output, StringComparison.Ordinal);
        }

        await using LoopbackServers s = await LoopbackServers.StartAsync();
        address = FreeAddress();
        await using DynamoProcess leader = DynamoProcess.Start(
            ["worker", "--model", Model, "--tp", "2", "--nnodes", "2", "--node-rank", "0", "--dist-init-addr", address, "--threads", "1"], s.Environment);
        await using DynamoProcess other = DynamoProcess.Start(
            ["worker", "--model", SharedData.Path("models", "stories260K", "stories260K.bin"), "--tokenizer", SharedData.Path("models", "stories260K", "tok512.bin"),
             "--tp", "2", "--nnodes", "2", "--node-rank", "1", "--dist-init-addr", address, "--threads", "1"]);
        Assert.NotEqual(0, await leader.WaitForExitAsync(60));
        Assert.NotEqual(0, await other.WaitForExitAsync(60));
        Assert.Matches("rank 1 disagrees with rank 0: model [0-9a-f]{16}; tp 2: .* vs model [0-9a-f]{16}; tp 2: ", leader.Output);
        Assert.Matches("rank 1 disagrees with rank 0: model [0-9a-f]{16}; tp 2: .* vs model [0-9a-f]{16}; tp 2: ", other.Output);
        Assert.DoesNotContain("   at ", leader.Output + other.Output, StringComparison.Ordinal);
    }

    [SharedFact]
    public async Task TwoHosts_Tp2AcrossNetworkNamespaces_SameTextAsTp1()
    {
        using NetworkNamespaces net = NetworkNamespaces.Create(3);
        await using HeadNode head = await HeadNode.StartAsync(net);
        Dictionary<string, string> env = head.Environment;
        string init = $"{net.Address(1)}:29500";
        await using DynamoProcess whole = DynamoProcess.Start(["worker", "--model", Model, "--component", "one", "--threads", "1"], env, net.Host(1));
        await using DynamoProcess node0 = DynamoProcess.Start(
            ["worker", "--model", Model, "--component", "two", "--tp", "2", "--nnodes", "2", "--node-rank", "0", "--dist-init-addr", init, "--threads", "1"], env, net.Host(1));
        await using DynamoProcess node1 = DynamoProcess.Start(
            ["worker", "--model", Model, "--tp", "2", "--nnodes", "2", "--node-rank", "1", "--dist-init-addr", init, "--threads", "1"], env, net.Host(2));
        await whole.WaitForLineAsync("serving dynamo.one.generate", 120);
        await node0.WaitForLineAsync("serving dynamo.two.generate", 120);
        await node1.WaitForLineAsync("rank 1 of 2 joined", 10);

        foreach (string prompt in Prompts)
        {
            Assert.Equal(await head.CallAsync(net, "one", prompt), await head.CallAsync(net, "two", prompt));
        }

        node0.Terminate();
        Assert.Equal(0, await node0.WaitForExitAsync(60));
        Assert.Equal(0, await node1.WaitForExitAsync(60));
    }

    private static DynamoProcess Worker(LoopbackServers s, string name, int tp) =>
        DynamoProcess.Start(["worker", "--model", Model, "--served-model-name", name, "--tp", tp.ToString(CultureInfo.InvariantCulture), "--threads", "1", "--lease-ttl", "3"], s.Environment);

    private static void Signal(string signal, int pid) => DynamoProcess.Signal(signal, pid);

    private static string FreeAddress()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return $"127.0.0.1:{((IPEndPoint)l.LocalEndpoint).Port}";
    }

    [GeneratedRegex(@"started rank 1 of \d+ \(pid (\d+)\)")]
    private static partial Regex RankPid();
}

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
        await using Servers s = await Servers.StartAsync();
        await using DynamoProcess one = s.Worker("one", 1);
        await using DynamoProcess two = s.Worker("two", 2);
        await using DynamoProcess four = s.Worker("four", 4);
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
        await using Servers s = await Servers.StartAsync(["--migration-limit", "0"]);
        await using DynamoProcess two = s.Worker("two", 2);
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
        await using Servers s = await Servers.StartAsync();
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
        await using Servers s = await Servers.StartAsync(["--router-mode", "kv"]);
        string[] common = ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1"];
        int decodePort = FreePort();
        await using DynamoProcess decode = DynamoProcess.Start(
            [.. common, "--tp", "2", "--system-port", decodePort.ToString(CultureInfo.InvariantCulture), "--max-local-prefill-length", "8", "--max-prefill-queue-size", "100"], s.Environment);
        await decode.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await using DynamoProcess prefill = DynamoProcess.Start([.. common, "--tp", "2", "--is-prefill-worker", "--disaggregation-mode", "prefill"], s.Environment);
        await prefill.WaitForLineAsync("serving dynamo.prefill.generate", 120);
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

        await using Servers s = await Servers.StartAsync();
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
            Assert.Equal(await CallAsync(net, env, "one", prompt), await CallAsync(net, env, "two", prompt));
        }

        node0.Terminate();
        Assert.Equal(0, await node0.WaitForExitAsync(60));
        Assert.Equal(0, await node1.WaitForExitAsync(60));
    }

    private static async Task<string> CallAsync(NetworkNamespaces net, Dictionary<string, string> env, string component, string prompt)
    {
        await using DynamoProcess call = DynamoProcess.Start(["call", $"dynamo.{component}.generate", "--prompt", prompt, "--max-tokens", "24"], env, net.Host(3));
        int code = await call.WaitForExitAsync(60);
        Assert.True(code == 0, call.Output);
        return call.Stdout;
    }

    private static void Signal(string signal, int pid)
    {
        using var kill = System.Diagnostics.Process.Start("kill", [signal, pid.ToString(CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
    }

    private static string FreeAddress()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return $"127.0.0.1:{((IPEndPoint)l.LocalEndpoint).Port}";
    }

    [GeneratedRegex(@"started rank 1 of \d+ \(pid (\d+)\)")]
    private static partial Regex RankPid();

    /// <summary>nats-server, etcd and a frontend on loopback.</summary>
    private sealed class Servers : IAsyncDisposable
    {
        private Servers(NatsServer nats, EtcdServer etcd, DynamoProcess frontend, HttpClient http)
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

        public static async Task<Servers> StartAsync(string[]? frontendArgs = null)
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
            return new Servers(nats, etcd, frontend, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(120) });
        }

        public DynamoProcess Worker(string name, int tp) =>
            DynamoProcess.Start(["worker", "--model", Model, "--served-model-name", name, "--tp", tp.ToString(CultureInfo.InvariantCulture), "--threads", "1", "--lease-ttl", "3"], Environment);

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
}

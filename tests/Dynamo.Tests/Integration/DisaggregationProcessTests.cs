using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Disaggregated prefill and decode with real processes on real nats-server and etcd: the newer guides'
/// flags (`frontend --router-mode kv`, `worker --is-prefill-worker`, `worker`), and the first guide's
/// three-node deployment with network namespaces as hosts (frontend, processor, router and a decode worker
/// on node 1, prefill workers on nodes 2 and 3) under its curl commands and 100-parallel stress test. The
/// KV moves over TCP between the workers; every remote prefill is counted on the workers' /metrics.
/// </summary>
[Trait("Category", "Slow")]
public sealed partial class DisaggregationProcessTests
{
    private const string Model = "nvidia/Llama-3.1-405B-Instruct-FP8";

    [Fact]
    public async Task FrontendAndPrefillAndDecodeWorkers_LongPromptPrefilledRemotely_SameTextAsALocalPrefill()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
        int port = FreePort();
        int decodePort = FreePort();
        int prefillPort = FreePort();
        await using DynamoProcess frontend = DynamoProcess.Start(["frontend", "--router-mode", "kv", "--http-port", port.ToString(), "--http-host", "127.0.0.1"], env);
        await frontend.WaitForLineAsync("frontend: listening");
        string[] common = ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", Model, "--kv-cache-memory", "16000000", "--threads", "1"];
        await using DynamoProcess decode = DynamoProcess.Start(
            [.. common, "--system-port", decodePort.ToString(), "--max-local-prefill-length", "8", "--max-prefill-queue-size", "100", "--disaggregation-transfer-backend", "nixl"], env);
        await decode.WaitForLineAsync("serving dynamo.backend.generate");
        await using DynamoProcess prefill = DynamoProcess.Start([.. common, "--is-prefill-worker", "--system-port", prefillPort.ToString()], env);
        await prefill.WaitForLineAsync("serving dynamo.prefill.generate");
        Assert.Contains("KV moves over the built-in TCP transfer", decode.Output);
        Assert.DoesNotContain("not implemented", prefill.Output);

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
        string body = CompletionBody(string.Join(' ', Enumerable.Range(0, 12).Select(i => $"word{i}")), 16);

        // The frontend routes with the prefill worker once it has seen its card: until then the decode worker prefills.
        string remote;
        var ready = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            remote = await CompleteAsync(http, body);
            if (await MetricAsync(decodePort, "dynamo_component_remote_prefills_total") >= 1)
            {
                break;
            }

            Assert.True(DateTime.UtcNow < ready, $"no remote prefill within 30 s:\n{decode.Output}");
        }

        await WaitForMetricAsync(prefillPort, "dynamo_component_prefills_served_total", 1);
        Assert.Contains("prefilled on worker", decode.Output);
        string frontendMetrics = await http.GetStringAsync("metrics");
        Assert.Matches(@"dynamo_frontend_disagg_decisions_total\{model=""[^""]+"",prefill=""remote"",reason=""long_prompt""\} 1\n", frontendMetrics);

        // Without prefill workers the decode worker prefills itself: the same greedy text.
        prefill.Terminate();
        Assert.Equal(0, await prefill.WaitForExitAsync());
        string local = await CompleteAsync(http, body);
        Assert.Equal(remote, local);
        Assert.Equal(1, await MetricAsync(decodePort, "dynamo_component_remote_prefills_total"));
    }

    [Theory]
    [InlineData("graphs.disagg", "disagg.yaml")]
    [InlineData("graphs.disagg_router", "disagg_router.yaml")]
    public async Task ServeDisaggGraph_OneCommand_LongChatPromptsPrefilledOnThePrefillWorker(string graph, string configFile)
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        string root = FindRoot();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint, ["DYNAMO_HOME"] = root };
        int port = FreePort();
        int decodePort = FreePort();
        int prefillPort = FreePort();
        string config = Path.Combine(Path.GetTempPath(), $"{graph}-{Guid.NewGuid():N}.yaml");
        string text = await File.ReadAllTextAsync(Path.Combine(root, "configs", configFile));
        await File.WriteAllTextAsync(config, text
            .Replace("port: 8000", $"port: {port}\n  host: 127.0.0.1", StringComparison.Ordinal)
            .Replace("remote-prefill: true", $"remote-prefill: true\n  system-port: {decodePort}", StringComparison.Ordinal)
            .Replace("PrefillWorker:\n", $"PrefillWorker:\n  system-port: {prefillPort}\n", StringComparison.Ordinal)
            .Replace("kv-cache-memory: 67108864", "kv-cache-memory: 16000000\n  threads: 1", StringComparison.Ordinal));
        try
        {
            await using DynamoProcess serve = DynamoProcess.Start(["serve", $"{graph}:Frontend", "-f", config], env);
            await serve.WaitForLineAsync("serve: started Frontend", 180);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
            string body = JsonSerializer.Serialize(new
            {
                model = "dynamo-tiny",
                messages = new[] { new { role = "user", content = "write a very long and boring bedtime story about an unicorn that rhymes" } },
                max_tokens = 12,
            });
            var until = DateTime.UtcNow.AddSeconds(60);
            while (await MetricAsync(decodePort, "dynamo_component_remote_prefills_total") < 1)
            {
                Assert.True(DateTime.UtcNow < until, $"no remote prefill within 60 s:\n{serve.Output}");
                using HttpResponseMessage response = await http.PostAsync("v1/chat/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
                Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            }

            Assert.Equal(1, await MetricAsync(prefillPort, "dynamo_component_prefills_served_total"));
            Assert.Contains("prefilled on worker", serve.Output);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public async Task Worker_UnknownTransferBackend_OneLineErrorAndExitCode()
    {
        await using DynamoProcess worker = DynamoProcess.Start(["worker", "--engine", "echo", "--disaggregation-transfer-backend", "carrier-pigeon"]);
        int code = await worker.WaitForExitAsync(60);
        Assert.NotEqual(0, code);
        string line = Assert.Single(worker.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), l => l.Contains("carrier-pigeon", StringComparison.Ordinal));
        Assert.Contains("tcp, nixl", line);
    }

    [Fact]
    public async Task ThreeNodeGuide_DecodeOnNode1_PrefillOnNodes2And3_CurlAndHundredParallelStreamsAllPrefilledRemotely()
    {
        using NetworkNamespaces net = NetworkNamespaces.Create(3);
        await using HeadNode head = await HeadNode.StartAsync(net);
        Dictionary<string, string> env = head.Environment;
        env["DYNAMO_HOME"] = FindRoot();
        const int HttpPort = 8000;
        const int DecodeMetrics = 9101;
        const int PrefillMetrics = 9102;
        string config = Path.Combine(Path.GetTempPath(), $"multinode-{Guid.NewGuid():N}.yaml");
        string text = await File.ReadAllTextAsync(Path.Combine(FindRoot(), "configs", "multinode-405b.yaml"));
        await File.WriteAllTextAsync(config, text
            .Replace("remote-prefill: true", $"remote-prefill: true\n  system-port: {DecodeMetrics}", StringComparison.Ordinal)
            .Replace("PrefillWorker:\n", $"PrefillWorker:\n  system-port: {PrefillMetrics}\n", StringComparison.Ordinal)
            .Replace("kv-cache-memory: 134217728", "kv-cache-memory: 32000000\n  threads: 1", StringComparison.Ordinal));
        try
        {
            // Node 1: the guide's serve command; nodes 2 and 3: the prefill workers, NATS and etcd from node 1.
            await using DynamoProcess node1 = DynamoProcess.Start(["serve", "graphs.agg_router:Frontend", "-f", config], env, net.Host(1));
            await node1.WaitForLineAsync("serve: started Frontend, Processor, Router, VllmWorker", 180);
            await using DynamoProcess node2 = DynamoProcess.Start(["serve", "components.prefill_worker:PrefillWorker", "-f", config], env, net.Host(2));
            await using DynamoProcess node3 = DynamoProcess.Start(["serve", "components.prefill_worker:PrefillWorker", "-f", config], env, net.Host(3));
            await node2.WaitForLineAsync("serving dynamo.prefill.generate", 180);
            await node3.WaitForLineAsync("serving dynamo.prefill.generate", 180);

            // Every prompt to the prefill workers, set at run time through the discovery store.
            await using (DynamoProcess disagg = DynamoProcess.Start(["disagg", "--model", Model, "--conditional-disagg", "false"], env, net.Host(2)))
            {
                Assert.Equal(0, await disagg.WaitForExitAsync(60));
                Assert.Contains("\"conditional_disagg\":false", disagg.Stdout);
            }

            await node1.WaitForLineAsync("conditional False", 30);
            await WaitForPrefillRouteAsync(net, env, node1, HttpPort, DecodeMetrics);

            // The guide's curl, then its stress test: seq 1 100 | xargs -P100 curl ...
            string guide = GuideBody(stream: false);
            string answer = await ShAsync(net.Host(1), $"curl -sS {net.Address(1)}:{HttpPort}/v1/chat/completions -H 'Content-Type: application/json' -d '{guide}'");
            using (JsonDocument doc = JsonDocument.Parse(answer))
            {
                Assert.Equal("chat.completion", doc.RootElement.GetProperty("object").GetString());
            }

            double before = await NodeMetricAsync(net.Host(1), net.Address(1), DecodeMetrics, "dynamo_component_remote_prefills_total");
            string dir = Path.Combine(Path.GetTempPath(), $"stress-{Guid.NewGuid():N}");
            Directory.CreateDirectory(dir);
            await File.WriteAllTextAsync(Path.Combine(dir, "body.json"), GuideBody(stream: true));
            await ShAsync(net.Host(1), $"seq 1 100 | xargs -I{{}} -n1 -P100 curl -sS {net.Address(1)}:{HttpPort}/v1/chat/completions -o {dir}/output{{}}.txt -H 'Content-Type: application/json' -H 'Accept: text/event-stream' -d @{dir}/body.json");
            string[] outputs = [.. Directory.GetFiles(dir, "output*.txt")];
            Assert.Equal(100, outputs.Length);
            foreach (string file in outputs)
            {
                GuideFlowsTests.AssertValidSse(await File.ReadAllTextAsync(file));
            }

            Directory.Delete(dir, true);

            // Each of the 100 prompts prefilled remotely: counted on the decode worker and per prefill worker.
            double remote = await NodeMetricAsync(net.Host(1), net.Address(1), DecodeMetrics, "dynamo_component_remote_prefills_total");
            Assert.Equal(100, remote - before);
            string localLines = string.Join('\n', (await ShAsync(net.Host(1), $"curl -sS {net.Address(1)}:{DecodeMetrics}/metrics")).Split('\n').Where(l => l.StartsWith("dynamo_component_local_prefills_total", StringComparison.Ordinal)));
            // Every reason's series is there from the start (at 0), so that rates over them work before the first one.
            Assert.True(localLines.Split('\n', StringSplitOptions.RemoveEmptyEntries).All(l => l.EndsWith(" 0", StringComparison.Ordinal)), localLines);
            double[] served =
            [
                await NodeMetricAsync(net.Host(2), net.Address(2), PrefillMetrics, "dynamo_component_prefills_served_total"),
                await NodeMetricAsync(net.Host(3), net.Address(3), PrefillMetrics, "dynamo_component_prefills_served_total"),
            ];
            Assert.Equal(remote, served.Sum());
            Assert.Contains("prefilled on worker", node1.Output);
        }
        finally
        {
            File.Delete(config);
        }
    }

    /// <summary>Sends guide requests until one is prefilled remotely (the prefill workers joined every view).</summary>
    private static async Task WaitForPrefillRouteAsync(NetworkNamespaces net, Dictionary<string, string> env, DynamoProcess node1, int httpPort, int decodeMetrics)
    {
        _ = env;
        var until = DateTime.UtcNow.AddSeconds(60);
        while (await NodeMetricAsync(net.Host(1), net.Address(1), decodeMetrics, "dynamo_component_remote_prefills_total") < 1)
        {
            Assert.True(DateTime.UtcNow < until, $"no remote prefill within 60 s:\n{node1.Output}");
            await ShAsync(net.Host(1), $"curl -sS {net.Address(1)}:{httpPort}/v1/chat/completions -H 'Content-Type: application/json' -d '{GuideBody(stream: false)}'");
        }
    }

    private static string GuideBody(bool stream) => JsonSerializer.Serialize(new
    {
        model = Model,
        messages = new[]
        {
            new { role = "user", content = "In the heart of the tennis world, where champions rise and fall with each Grand Slam, lies the legend of the Golden Racket of Wimbledon. Describe the quest." },
        },
        stream,
        max_tokens = 30,
    });

    private static string CompletionBody(string prompt, int maxTokens) => JsonSerializer.Serialize(new { model = Model, prompt, max_tokens = maxTokens, temperature = 0 });

    private static async Task<string> CompleteAsync(HttpClient http, string body)
    {
        using HttpResponseMessage response = await http.PostAsync("v1/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        using JsonDocument doc = JsonDocument.Parse(text);
        return doc.RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }

    private static Task<double> MetricAsync(int port, string name) => PrometheusText.ScrapeAsync(port, name);

    private static async Task WaitForMetricAsync(int port, string name, double value)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (await MetricAsync(port, name) != value)
        {
            Assert.True(DateTime.UtcNow < until, $"{name} never reached {value}");
            await Task.Delay(100);
        }
    }

    private static async Task<double> NodeMetricAsync(string netns, string address, int port, string name) =>
        PrometheusText.Value(await ShAsync(netns, $"curl -sS {address}:{port}/metrics"), name);

    /// <summary>Runs a shell command inside a namespace (as on that host); its stdout, or a failed assertion with its stderr.</summary>
    private static async Task<string> ShAsync(string netns, string command)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "netns", "exec", netns, "bash", "-c", command })
        {
            start.ArgumentList.Add(a);
        }

        using Process p = Process.Start(start)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"{command}: {stderr}");
        return await stdout;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static string FindRoot()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Dynamo.slnx")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        return dir ?? throw new InvalidOperationException("repository root not found");
    }
}

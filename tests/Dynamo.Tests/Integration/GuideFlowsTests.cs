using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// The guides' flows with real processes: `dynamo run`, `dynamo frontend` + `dynamo worker` over real
/// nats-server and etcd, `dynamo serve` with the shipped graphs and configs, and the guides' curl
/// commands (host and model name aside) including the 100-parallel-request stress test.
/// </summary>
[Trait("Category", "Slow")]
public sealed class GuideFlowsTests
{
    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static string ChatBody(string model, bool stream, int maxTokens) => JsonSerializer.Serialize(new
    {
        model,
        messages = new[] { new { role = "user", content = "write a very long and boring bedtime story about an unicorn that rhymes" } },
        stream,
        max_tokens = maxTokens,
    });

    /// <summary>Runs curl as the guides do; returns its stdout.</summary>
    private static async Task<string> CurlAsync(int port, string body, bool acceptEventStream = true)
    {
        var start = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-sS", $"127.0.0.1:{port}/v1/chat/completions", "-H", "Content-Type: application/json" })
        {
            start.ArgumentList.Add(a);
        }

        if (acceptEventStream)
        {
            start.ArgumentList.Add("-H");
            start.ArgumentList.Add("Accept: text/event-stream");
        }

        start.ArgumentList.Add("-d");
        start.ArgumentList.Add(body);
        using Process curl = Process.Start(start) ?? throw new InvalidOperationException("curl did not start (apt-get install -y curl)");
        Task<string> stdout = curl.StandardOutput.ReadToEndAsync();
        string stderr = await curl.StandardError.ReadToEndAsync();
        await curl.WaitForExitAsync();
        Assert.True(curl.ExitCode == 0, $"curl failed: {stderr}");
        return await stdout;
    }

    /// <summary>Checks an OpenAI SSE stream: data lines of chat.completion.chunk JSON, then [DONE]; returns the text.</summary>
    internal static string AssertValidSse(string sse)
    {
        string[] events = sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.True(events.Length >= 2, sse);
        Assert.Equal("data: [DONE]", events[^1].Trim());
        var text = new System.Text.StringBuilder();
        string? finish = null;
        foreach (string e in events[..^1].Where(e => !e.StartsWith(':')))
        {
            Assert.StartsWith("data: ", e);
            using JsonDocument doc = JsonDocument.Parse(e["data: ".Length..]);
            Assert.False(doc.RootElement.TryGetProperty("error", out _), e);
            Assert.Equal("chat.completion.chunk", doc.RootElement.GetProperty("object").GetString());
            foreach (JsonElement choice in doc.RootElement.GetProperty("choices").EnumerateArray())
            {
                if (choice.GetProperty("delta").TryGetProperty("content", out JsonElement c) && c.ValueKind == JsonValueKind.String)
                {
                    text.Append(c.GetString());
                }

                if (choice.TryGetProperty("finish_reason", out JsonElement f) && f.ValueKind == JsonValueKind.String)
                {
                    finish = f.GetString();
                }
            }
        }

        Assert.NotNull(finish);
        return text.ToString();
    }

    [Fact]
    public async Task Run_DefaultModel_ServesChatStreamingAndNot()
    {
        int port = FreePort();
        await using DynamoProcess run = DynamoProcess.Start(["run", "--http-port", port.ToString(), "--http-host", "127.0.0.1", "--threads", "1", "--kv-cache-memory", "16000000"]);
        await run.WaitForLineAsync("OpenAI-compatible API on", 120);
        AssertValidSse(await CurlAsync(port, ChatBody("dynamo-tiny", stream: true, maxTokens: 20)));
        using JsonDocument full = JsonDocument.Parse(await CurlAsync(port, ChatBody("dynamo-tiny", stream: false, maxTokens: 20), acceptEventStream: false));
        Assert.Equal("chat.completion", full.RootElement.GetProperty("object").GetString());
        // The random default model may emit its end-of-sequence token before max_tokens.
        Assert.InRange(full.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), 1, 20);
    }

    [Fact]
    public async Task FrontendAndWorkerProcesses_OverNatsAndEtcd_GuideCurlAndHundredParallelStreams()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
        int port = FreePort();
        await using DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", port.ToString(), "--http-host", "127.0.0.1"], env);
        await frontend.WaitForLineAsync("frontend: listening");
        await using DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", "nvidia/Llama-3.1-405B-Instruct-FP8", "--kv-cache-memory", "64000000", "--threads", "1", "--tensor-parallel-size", "2"], env);
        await worker.WaitForLineAsync("serving dynamo.backend.generate");

        // The guides' --tensor-parallel-size, real: the tiny stand-in's 2 KV heads split over 2 rank processes.
        Assert.Contains("rank 1 of 2 joined", worker.Output);

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };
        var until = DateTime.UtcNow.AddSeconds(20);
        while (!(await http.GetStringAsync("v1/models")).Contains("nvidia/Llama-3.1-405B-Instruct-FP8"))
        {
            Assert.True(DateTime.UtcNow < until, "model never listed");
            await Task.Delay(100);
        }

        AssertValidSse(await CurlAsync(port, ChatBody("nvidia/Llama-3.1-405B-Instruct-FP8", stream: true, maxTokens: 30)));

        // seq 1 100 | xargs -n1 -P100 curl ... (the guides' stress test)
        string bodyFile = Path.Combine(Path.GetTempPath(), $"body-{Guid.NewGuid():N}.json");
        string outDir = Path.Combine(Path.GetTempPath(), $"stress-{Guid.NewGuid():N}");
        Directory.CreateDirectory(outDir);
        await File.WriteAllTextAsync(bodyFile, ChatBody("nvidia/Llama-3.1-405B-Instruct-FP8", stream: true, maxTokens: 40));
        var stress = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true };
        stress.ArgumentList.Add("-c");
        stress.ArgumentList.Add($"seq 1 100 | xargs -I{{}} -n1 -P100 curl -sS 127.0.0.1:{port}/v1/chat/completions -o {outDir}/output{{}}.txt -H 'Content-Type: application/json' -H 'Accept: text/event-stream' -d @{bodyFile}");
        using (Process p = Process.Start(stress)!)
        {
            string err = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.True(p.ExitCode == 0, err);
        }

        string[] outputs = Directory.GetFiles(outDir);
        Assert.Equal(100, outputs.Length);
        foreach (string file in outputs)
        {
            AssertValidSse(await File.ReadAllTextAsync(file));
        }

        Directory.Delete(outDir, true);
        File.Delete(bodyFile);

        worker.Terminate();
        await worker.WaitForExitAsync();
        until = DateTime.UtcNow.AddSeconds(10);
        while ((await http.GetStringAsync("v1/models")).Contains("nvidia/Llama-3.1-405B-Instruct-FP8"))
        {
            Assert.True(DateTime.UtcNow < until, "model still listed after its only worker left");
            await Task.Delay(100);
        }

        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("health")).StatusCode);
    }

    [Fact]
    public async Task Serve_GraphOnNode1_PrefillWorkerOnNode2_ServesTheGuideCurl()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };
        int port = FreePort();
        string root = FindRoot();
        string config = Path.Combine(Path.GetTempPath(), $"multinode-{Guid.NewGuid():N}.yaml");
        string text = await File.ReadAllTextAsync(Path.Combine(root, "configs", "multinode-405b.yaml"));
        await File.WriteAllTextAsync(config, text.Replace("port: 8000", $"port: {port}", StringComparison.Ordinal)
            .Replace("host: 0.0.0.0", "host: 127.0.0.1", StringComparison.Ordinal)
            .Replace("kv-cache-memory: 134217728", "kv-cache-memory: 16000000\n  threads: 1", StringComparison.Ordinal));
        env["DYNAMO_HOME"] = root;
        await using DynamoProcess node1 = DynamoProcess.Start(["serve", "graphs.agg_router:Frontend", "-f", config], env);
        await node1.WaitForLineAsync("serve: started Frontend, Processor, Router, VllmWorker", 120);
        await using DynamoProcess node2 = DynamoProcess.Start(["serve", "components.prefill_worker:PrefillWorker", "-f", config], env);
        await node2.WaitForLineAsync("serving dynamo.prefill.generate", 120);

        // Waited for, not asserted at once: stdout and stderr lines are read by two readers, so one stream's line can
        // arrive after a line the process wrote later on the other.
        await node2.WaitForLineAsync("prefill worker: prefills prompts for decode workers", 30);
        Assert.DoesNotContain("remote_prefill is accepted but has no effect", node1.Output);
        Assert.DoesNotContain("max_local_prefill_length is accepted but has no effect", node1.Output);

        AssertValidSse(await CurlAsync(port, ChatBody("nvidia/Llama-3.1-405B-Instruct-FP8", stream: true, maxTokens: 30)));
        File.Delete(config);
    }

    [SharedFact]
    public async Task Serve_Llama49bConfig_AnswersTheGuidesRequestAsWritten()
    {
        // The guide's 49B request, as its curl sends it: a ~200-word prompt, max_tokens 1500, not streamed.
        string guide = await File.ReadAllTextAsync(SharedData.Path("seeds", "002_0f30510682ae0aea.txt"));
        int model = guide.IndexOf("\"model\": \"nvidia/Llama-3_3-Nemotron-Super-49B-v1\"", StringComparison.Ordinal);
        int start = guide.LastIndexOf("-d '", model, StringComparison.Ordinal) + "-d '".Length;
        string body = guide[start..(guide.IndexOf("}'", model, StringComparison.Ordinal) + 1)];
        using (JsonDocument request = JsonDocument.Parse(body))
        {
            Assert.Equal(1500, request.RootElement.GetProperty("max_tokens").GetInt32());
        }

        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint, ["DYNAMO_HOME"] = FindRoot() };
        int port = FreePort();
        string config = Path.Combine(Path.GetTempPath(), $"llama49b-{Guid.NewGuid():N}.yaml");
        string text = await File.ReadAllTextAsync(Path.Combine(FindRoot(), "configs", "multinode_llama49b.yaml"));
        await File.WriteAllTextAsync(config, text.Replace("port: 8000", $"port: {port}", StringComparison.Ordinal)
            .Replace("host: 0.0.0.0", "host: 127.0.0.1", StringComparison.Ordinal)
            .Replace("kv-cache-memory: 134217728", "kv-cache-memory: 16000000\n  threads: 1", StringComparison.Ordinal));
        await using DynamoProcess node1 = DynamoProcess.Start(["serve", "graphs.agg_router:Frontend", "-f", config], env);
        await node1.WaitForLineAsync("serve: started Frontend, Processor, Router, VllmWorker", 180);

        var curl = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-sS", "-w", "\n%{http_code}", $"127.0.0.1:{port}/v1/chat/completions", "-H", "Content-Type: application/json", "-d", body })
        {
            curl.ArgumentList.Add(a);
        }

        using Process p = Process.Start(curl)!;
        string output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        int cut = output.LastIndexOf('\n');
        Assert.True(output[(cut + 1)..] == "200", output);
        using JsonDocument answer = JsonDocument.Parse(output[..cut]);
        JsonElement usage = answer.RootElement.GetProperty("usage");
        Assert.InRange(usage.GetProperty("completion_tokens").GetInt32(), 1, 1500);
        Assert.True(usage.GetProperty("prompt_tokens").GetInt32() + 1500 <= 4096, output);
        File.Delete(config);
    }

    [Fact]
    public async Task Serve_EachComponentItsOwnProcess_FrontendRelaysToTheProcessor()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint, ["DYNAMO_HOME"] = FindRoot() };
        int port = FreePort();
        int processorPort = FreePort();
        string config = Path.Combine(Path.GetTempPath(), $"agg-router-{Guid.NewGuid():N}.yaml");
        string text = await File.ReadAllTextAsync(Path.Combine(FindRoot(), "configs", "agg_router.yaml"));
        await File.WriteAllTextAsync(config, text
            .Replace("port: 8000", $"port: {port}\n  host: 127.0.0.1", StringComparison.Ordinal)
            .Replace("router: kv", $"router: kv\n  system-port: {processorPort}", StringComparison.Ordinal)
            .Replace("kv-cache-memory: 67108864", "kv-cache-memory: 16000000\n  threads: 1", StringComparison.Ordinal)
            .Replace("workers: 2", "workers: 1", StringComparison.Ordinal));
        string[] Serve(string component) => ["serve", "graphs.agg_router:Frontend", "-f", config, "--service-name", component];

        // As on separate nodes: each component its own process, started in the guides' order.
        await using DynamoProcess worker = DynamoProcess.Start(Serve("VllmWorker"), env);
        await worker.WaitForLineAsync("serve: started VllmWorker", 120);
        await using DynamoProcess router = DynamoProcess.Start(Serve("Router"), env);
        await router.WaitForLineAsync("serve: started Router", 60);
        await using DynamoProcess processor = DynamoProcess.Start(Serve("Processor"), env);
        await processor.WaitForLineAsync("serve: started Processor", 60);
        await using DynamoProcess frontend = DynamoProcess.Start(Serve("Frontend"), env);
        await frontend.WaitForLineAsync("serve: started Frontend", 60);

        string streamed = AssertValidSse(await CurlAsync(port, ChatBody("dynamo-tiny", stream: true, maxTokens: 12)));
        using JsonDocument full = JsonDocument.Parse(await CurlAsync(port, ChatBody("dynamo-tiny", stream: false, maxTokens: 12), acceptEventStream: false));

        Assert.False(string.IsNullOrEmpty(streamed));
        string id = full.RootElement.GetProperty("id").GetString()!;
        await processor.WaitForLineAsync($"processed {id} status=200", 10);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{processorPort}/") };
        string metrics = await http.GetStringAsync("metrics");
        Assert.Contains("dynamo_processor_requests_total 2", metrics, StringComparison.Ordinal);
        File.Delete(config);
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

using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Dynamo.Components.ModelCards;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.ModelCards;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.Engines;
using Dynamo.Tests.Runtime;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Several processes on one machine, real nats-server and etcd: `dynamo worker` processes serve a
/// synthesized model; this process (or `dynamo call`) is the client, as a frontend on another node is.
/// </summary>
[Trait("Category", "Slow")]
[Collection(TimingCollection.Name)]
public sealed class DistributedRuntimeTests : IAsyncLifetime
{
    private static readonly EndpointAddress Generate = new("dynamo", "backend", "generate");
    private NatsServer _nats = null!;
    private EtcdServer _etcd = null!;

    public async Task InitializeAsync()
    {
        _nats = await NatsServer.StartAsync();
        _etcd = await EtcdServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _nats.DisposeAsync();
        await _etcd.DisposeAsync();
    }

    private Dictionary<string, string> Env => new() { ["NATS_SERVER"] = _nats.Url, ["ETCD_ENDPOINTS"] = _etcd.Endpoint };

    private Task<DistributedRuntime> ConnectAsync() => DistributedRuntime.ConnectAsync(new RuntimeOptions
    {
        NatsServer = _nats.Url,
        EtcdEndpoints = [_etcd.Endpoint],
        LeaseTtl = TimeSpan.FromSeconds(3),
    });

    private DynamoProcess StartWorker(params string[] extra) => DynamoProcess.Start(
        ["worker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--kv-cache-memory", "16000000", "--threads", "1", "--lease-ttl", "3", .. extra], Env);

    private static byte[] Request(int[] tokens, int maxTokens) => Encoding.UTF8.GetBytes(
        $"{{\"version\":1,\"token_ids\":[{string.Join(',', tokens)}],\"sampling\":{{\"temperature\":0,\"max_tokens\":{maxTokens},\"ignore_eos\":true}}}}");

    private static async Task<List<int>> TokensAsync(EndpointClient client, byte[] payload, long? instance = null)
    {
        var tokens = new List<int>();
        await foreach (ReadOnlyMemory<byte> r in client.StreamAsync(payload, instance))
        {
            using JsonDocument doc = JsonDocument.Parse(r);
            tokens.AddRange(doc.RootElement.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32()));
        }

        return tokens;
    }

    [Fact]
    public async Task WorkerProcess_ServesClientInAnotherProcess_AndLeavesAtOnceOnSigterm()
    {
        int[] prompt = [5, 17, 99, 3, 42, 42, 7];
        await using InferenceEngine direct = InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        var (expected, _, _) = await EngineContractTests.CollectAsync(direct, new EngineRequest("d", prompt, SamplingParams.Greedy with { MaxTokens = 16, IgnoreEos = true }));

        await using DynamoProcess worker = StartWorker();
        await worker.WaitForLineAsync("serving dynamo.backend.generate");
        await using DistributedRuntime frontend = await ConnectAsync();
        await using EndpointClient client = await frontend.CreateClientAsync(Generate);
        await client.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(10));
        InstanceRecord record = Assert.Single(client.Instances);
        Assert.Equal("nats", record.Transport);
        Assert.Equal(worker.Pid, record.Pid);

        Assert.Equal(expected, await TokensAsync(client, Request(prompt, 16)));

        var (key, card) = Assert.Single(await ModelCardStore.ListAsync(frontend.Discovery));
        Assert.Equal(Generate.ModelCardKey(record.InstanceId), key);
        Assert.Equal("tiny", card.Name);
        string cache = Path.Combine(Path.GetTempPath(), "dynamo-card-cache", Guid.NewGuid().ToString("N"));
        TokenizerBundle tokenizer = await ModelCardStore.LoadTokenizerAsync(card, frontend.Blobs, cache);
        Assert.NotEmpty(tokenizer.Tokenizer.Encode("hello world", true));
        Directory.Delete(cache, true);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        worker.Terminate();
        Assert.Equal(0, await worker.WaitForExitAsync());
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => client.Instances.Count == 0, 5);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"instance left after {clock.Elapsed}");
        Assert.Empty(await ModelCardStore.ListAsync(frontend.Discovery));
    }

    [Fact]
    public async Task WorkerKilled_InFlightRequestEndsWithErrorAndInstanceLeavesWithinTtl()
    {
        await using DynamoProcess worker = StartWorker();
        await worker.WaitForLineAsync("serving dynamo.backend.generate");
        await using DistributedRuntime frontend = await ConnectAsync();
        await using EndpointClient client = await frontend.CreateClientAsync(Generate);
        await client.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(10));

        int received = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan killedAt = default;
        RequestPlaneException e = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> r in client.StreamAsync(Request([1, 2, 3], 200)))
            {
                if (++received == 3)
                {
                    worker.Kill();
                    killedAt = clock.Elapsed;
                }
            }
        });
        TimeSpan detected = clock.Elapsed - killedAt;
        Assert.True(e.Kind is RequestErrorKind.Unreachable, $"{e.Kind} {e.Code}: {e.Message}");
        Assert.True(detected < TimeSpan.FromSeconds(8), $"error after {detected}");
        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => client.Instances.Count == 0, 6);
        Assert.True(clock.Elapsed - killedAt < TimeSpan.FromSeconds(8), $"instance left after {clock.Elapsed - killedAt}");
    }

    [Fact]
    public async Task NatsRestarted_WorkerAndClientServeAgainWithoutRestart()
    {
        await using DynamoProcess worker = StartWorker();
        await worker.WaitForLineAsync("serving dynamo.backend.generate");
        await using DistributedRuntime frontend = await ConnectAsync();
        await using EndpointClient client = await frontend.CreateClientAsync(Generate);
        await client.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(10));
        List<int> before = await TokensAsync(client, Request([9, 8, 7], 5));

        _nats.Kill();
        await Task.Delay(500);
        await _nats.RestartAsync();

        List<int>? after = null;
        var until = DateTime.UtcNow.AddSeconds(15);
        while (after is null)
        {
            try
            {
                after = await TokensAsync(client, Request([9, 8, 7], 5));
            }
            catch (RequestPlaneException) when (DateTime.UtcNow < until)
            {
                await Task.Delay(200);
            }
        }

        Assert.Equal(before, after);
        Assert.False(worker.HasExited);
    }

    [Fact]
    public async Task EtcdDownLongerThanTtl_RunningRequestUnaffected_RegistrationRestored()
    {
        await using DynamoProcess worker = StartWorker();
        await worker.WaitForLineAsync("serving dynamo.backend.generate");
        await using DistributedRuntime frontend = await ConnectAsync();
        await using EndpointClient client = await frontend.CreateClientAsync(Generate);
        await client.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(10));
        long id = Assert.Single(client.Instances).InstanceId;

        Task<List<int>> running = TokensAsync(client, Request([4, 5, 6], 60), id);
        await _etcd.StopAsync();
        List<int> duringOutage = await TokensAsync(client, Request([4, 5, 6], 3), id);
        Assert.Equal(3, duringOutage.Count);
        await Task.Delay(TimeSpan.FromSeconds(4.5));
        await _etcd.RestartAsync();
        Assert.Equal(60, (await running).Count);

        await DistributedRuntimeInProcessTests.WaitUntilAsync(() => client.Instances.Any(r => r.InstanceId == id), 20);
        Assert.Equal(3, (await TokensAsync(client, Request([4, 5, 6], 3))).Count);
        Assert.False(worker.HasExited);
    }

    [Fact]
    public async Task CallCommand_Prompt_TokenizesWithModelCardAndPrintsText()
    {
        await using DynamoProcess worker = StartWorker();
        await worker.WaitForLineAsync("serving dynamo.backend.generate");
        await using DynamoProcess call = DynamoProcess.Start(["call", "dynamo.backend.generate", "--prompt", "Hello", "--max-tokens", "8"], Env);
        Assert.Equal(0, await call.WaitForExitAsync(60));

        string raw = "{\"version\":1,\"token_ids\":[1,2],\"sampling\":{\"max_tokens\":2,\"temperature\":0,\"ignore_eos\":true}}";
        await using DynamoProcess rawCall = DynamoProcess.Start(["call", "dynamo.backend.generate", "--data", raw], Env);
        Assert.Equal(0, await rawCall.WaitForExitAsync(60));
        Assert.Contains("\"finish_reason\":\"length\"", rawCall.Output);

        await using DynamoProcess bad = DynamoProcess.Start(["call", "dynamo.backend.generate", "--data", "{nonsense"], Env);
        Assert.Equal(1, await bad.WaitForExitAsync(60));
        Assert.Contains("error: invalid_request", bad.Output);
    }

    [Fact]
    public async Task Worker_EtcdUnreachable_ExitsWithOneLineNamingTheAddress()
    {
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = _nats.Url, ["ETCD_ENDPOINTS"] = "127.0.0.1:1" };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await using DynamoProcess worker = DynamoProcess.Start(["worker", "--model", TestModels.Tiny.Value], env);
        Assert.Equal(1, await worker.WaitForExitAsync(60));
        Assert.Contains("127.0.0.1:1", worker.Output);
        Assert.Contains("ETCD_ENDPOINTS", worker.Output);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
    }

    [Theory]
    [InlineData("NATS_SERVER", "nats://:4222x", "NATS_SERVER")]
    [InlineData("ETCD_ENDPOINTS", "http://host:notaport", "ETCD_ENDPOINTS")]
    [InlineData("NATS_SERVER", "127.0.0.1:1", "nats://127.0.0.1:1")]
    public async Task Worker_BadOrUnreachableEnvironment_ClearError(string variable, string value, string expected)
    {
        Dictionary<string, string> env = Env;
        env[variable] = value;
        await using DynamoProcess worker = DynamoProcess.Start(["worker", "--model", TestModels.Tiny.Value], env);
        Assert.Equal(1, await worker.WaitForExitAsync(60));
        Assert.Contains(expected, worker.Output);
        Assert.StartsWith("error: ", worker.Output.Trim().Split('\n')[^1]);
    }

    [Fact]
    public async Task WorkerFrozenMidRequest_ClientGivesUp_WorkerStopsTheRequestOnceResumed()
    {
        // Before the keepalives, a worker frozen with SIGSTOP and resumed ran to their end the requests its
        // client had already given up on; now the client's cancel, or its missing keepalives, reach it.
        int metricsPort = FreePort();
        const string inFlight = "dynamo_component_inflight_requests";
        const int maxTokens = 1500;

        // A mocker at half speed: 1,500 tokens take about 24 s, far longer than the test waits.
        await using DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--engine", "mocker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--speedup-ratio", "0.5",
             "--system-port", metricsPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--lease-ttl", "30", "--threads", "1"],
            Env);
        await worker.WaitForLineAsync("serving dynamo.backend.generate");
        await using DistributedRuntime runtime = await ConnectAsync();
        await using EndpointClient client = await runtime.CreateClientAsync(Generate);
        await client.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(10));

        byte[] payload = Request([5, 17, 99, 3], maxTokens);
        var idle = TimeSpan.FromSeconds(2);
        int responses = 0;
        var clock = new Stopwatch();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync(payload, options: RequestOptions.Default with { IdleTimeout = idle }))
            {
                if (++responses == 5)
                {
                    Assert.Equal(1, await PrometheusText.ScrapeAsync(metricsPort, inFlight));
                    worker.Freeze();
                    clock.Start();
                }
            }
        });
        Assert.Equal(RequestErrorKind.Unreachable, error.Kind);
        Assert.InRange(clock.Elapsed, idle - TimeSpan.FromMilliseconds(200), idle + TimeSpan.FromSeconds(3));

        // Resumed: the request stops within the client-idle check (4 keepalive intervals) and some slack,
        // where before it ran to its end.
        worker.Thaw();
        clock.Restart();
        while (await PrometheusText.ScrapeAsync(metricsPort, inFlight) > 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the request still ran {clock.Elapsed} after the worker resumed:\n{worker.Output}");
            await Task.Delay(100);
        }

        Assert.True(await PrometheusText.ScrapeAsync(metricsPort, "dynamo_component_output_tokens_total") < maxTokens, "the request ran to its end");
        Assert.False(worker.HasExited);
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}

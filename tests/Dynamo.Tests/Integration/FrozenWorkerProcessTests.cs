using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// A `dynamo worker` process frozen with SIGSTOP mid-request, real nats-server and etcd: the client (this
/// process) gives up on it as unreachable, and once the worker resumes it stops the request the client gave
/// up on, instead of running it to its end (the client's cancel, or its missing keepalives, reach it).
/// </summary>
[Trait("Category", "Slow")]
[Collection(TimingCollection.Name)]
public sealed class FrozenWorkerProcessTests : IAsyncLifetime
{
    private const string InFlight = "dynamo_component_inflight_requests";
    private const int MaxTokens = 1500;
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

    [Fact]
    public async Task WorkerFrozenMidRequest_ClientGivesUp_WorkerStopsTheRequestOnceResumed()
    {
        int metricsPort = FreePort();

        // A mocker at half speed: 1,500 tokens take about 24 s, far longer than the test waits.
        await using DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--engine", "mocker", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--speedup-ratio", "0.5",
             "--system-port", metricsPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--lease-ttl", "30", "--threads", "1"],
            new Dictionary<string, string> { ["NATS_SERVER"] = _nats.Url, ["ETCD_ENDPOINTS"] = _etcd.Endpoint });
        await worker.WaitForLineAsync("serving dynamo.backend.generate");
        await using DistributedRuntime runtime = await DistributedRuntime.ConnectAsync(new RuntimeOptions { NatsServer = _nats.Url, EtcdEndpoints = [_etcd.Endpoint] });
        await using EndpointClient client = await runtime.CreateClientAsync(new EndpointAddress("dynamo", "backend", "generate"));
        await client.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(10));

        byte[] payload = Encoding.UTF8.GetBytes($"{{\"version\":1,\"token_ids\":[5,17,99,3],\"sampling\":{{\"temperature\":0,\"max_tokens\":{MaxTokens},\"ignore_eos\":true}}}}");
        var idle = TimeSpan.FromSeconds(2);
        int responses = 0;
        var clock = new Stopwatch();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync(payload, options: RequestOptions.Default with { IdleTimeout = idle }))
            {
                if (++responses == 5)
                {
                    Assert.Equal(1, await PrometheusText.ScrapeAsync(metricsPort, InFlight));
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
        while (await PrometheusText.ScrapeAsync(metricsPort, InFlight) > 0)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the request still ran {clock.Elapsed} after the worker resumed:\n{worker.Output}");
            await Task.Delay(100);
        }

        Assert.True(await PrometheusText.ScrapeAsync(metricsPort, "dynamo_component_output_tokens_total") < MaxTokens, "the request ran to its end");
        Assert.False(worker.HasExited);
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}

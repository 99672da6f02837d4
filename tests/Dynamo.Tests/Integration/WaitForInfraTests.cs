using System.Net;
using System.Text;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// `--wait-for-infra`: a deployment started all at once, its worker and frontend before nats-server and etcd
/// (real ones, started after them on the ports they look at), waits for them with a progress line and then
/// serves; a bound that passes ends the process with one line naming the address and the bound.
/// </summary>
[Trait("Category", "Slow")]
public sealed class WaitForInfraTests
{
    [Fact]
    public async Task WorkerAndFrontend_StartedBeforeNatsAndEtcd_WaitThenServe()
    {
        int natsPort = LoopbackServers.FreePort(), etcdPort = LoopbackServers.FreePort(), httpPort = LoopbackServers.FreePort();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = $"nats://127.0.0.1:{natsPort}", ["ETCD_ENDPOINTS"] = $"http://127.0.0.1:{etcdPort}" };
        await using DynamoProcess worker = DynamoProcess.Start(["worker", "--engine", "echo", "--served-model-name", "early", "--wait-for-infra", "300"], env);
        await using DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", httpPort.ToString(), "--wait-for-infra"], env);

        await worker.WaitForLineAsync("worker: waiting for NATS and etcd (", 120);
        await frontend.WaitForLineAsync("frontend: waiting for NATS and etcd (", 120);
        Assert.Contains("--wait-for-infra): etcd at http://127.0.0.1:" + etcdPort + " is unreachable", worker.Output, StringComparison.Ordinal);
        await using EtcdServer etcd = await EtcdServer.StartAsync(clientPort: etcdPort);
        await using NatsServer nats = await NatsServer.StartAsync(port: natsPort);

        await worker.WaitForLineAsync("worker: NATS and etcd answered after", 120);
        await worker.WaitForLineAsync("serving dynamo.backend.generate", 120);
        await frontend.WaitForLineAsync("frontend: listening", 120);
        Assert.False(worker.HasExited);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{httpPort}/") };
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!(await http.GetStringAsync("v1/models")).Contains("\"early\"", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < until, "the worker's model never listed");
            await Task.Delay(50);
        }

        using HttpResponseMessage answer = await http.PostAsync("v1/completions", new StringContent("""{"model":"early","prompt":"hello","max_tokens":4}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
    }

    [Fact]
    public async Task Serve_NothingComesUp_GivesUpAfterTheBoundWithOneLine()
    {
        var env = new Dictionary<string, string>
        {
            ["NATS_SERVER"] = $"nats://127.0.0.1:{LoopbackServers.FreePort()}",
            ["ETCD_ENDPOINTS"] = $"http://127.0.0.1:{LoopbackServers.FreePort()}",
            ["DYNAMO_HOME"] = RepoPaths.Root,
        };
        await using DynamoProcess serve = DynamoProcess.Start(["serve", "graphs.agg:Frontend", "-f", Path.Combine(RepoPaths.Root, "configs", "mocker.yaml"), "--service-name", "Processor", "--wait-for-infra", "1"], env);

        Assert.Equal(1, await serve.WaitForExitAsync(120));
        string error = Assert.Single(serve.Output.Split('\n'), l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.Matches(@"^error: etcd at http://127\.0\.0\.1:\d+ is unreachable \(ETCD_ENDPOINTS\): .*; gave up after waiting 1 s \(--wait-for-infra 1\)$", error.TrimEnd('\r'));
    }

    [Fact]
    public async Task Worker_WithoutTheFlag_StillExitsAtOnceWithTheAddress()
    {
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = $"nats://127.0.0.1:{LoopbackServers.FreePort()}", ["ETCD_ENDPOINTS"] = $"http://127.0.0.1:{LoopbackServers.FreePort()}" };
        await using DynamoProcess worker = DynamoProcess.Start(["worker", "--engine", "echo", "--served-model-name", "early"], env);

        Assert.Equal(1, await worker.WaitForExitAsync(120));
        Assert.DoesNotContain("waiting for NATS and etcd", worker.Output, StringComparison.Ordinal);
        Assert.Contains("is unreachable (ETCD_ENDPOINTS)", worker.Output, StringComparison.Ordinal);
    }
}

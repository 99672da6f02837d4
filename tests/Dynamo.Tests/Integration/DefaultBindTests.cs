using System.Net;
using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Nothing listens beyond this host unless asked: a frontend and a worker (HTTP port, system port, KV transfer)
/// started with their defaults listen on loopback only, each says so at startup, and the flags open them.
/// Checked on the sockets the processes really hold (/proc), so that a listener nobody thought of shows up too.
/// </summary>
[Trait("Category", "Slow")]
public sealed class DefaultBindTests
{
    [Fact]
    public async Task FrontendAndWorker_Defaults_ListenOnLoopbackOnly_FlagsOpenEveryInterface()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string> { ["NATS_SERVER"] = nats.Url, ["ETCD_ENDPOINTS"] = etcd.Endpoint };

        await using (DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", "0"], env))
        await using (DynamoProcess worker = DynamoProcess.Start(["worker", "--engine", "echo", "--model", TestModels.Tiny.Value, "--system-port", "0"], env))
        {
            await frontend.WaitForLineAsync("frontend: listening on 127.0.0.1:");
            await worker.WaitForLineAsync("worker: /metrics, /health and /live on ");
            Assert.Contains("(this host only; --http-host 0.0.0.0 accepts other hosts)", frontend.Output);
            Assert.Matches(SystemLine(@"127\.0\.0\.1:\d+ \(this host only; --system-host 0\.0\.0\.0 accepts other hosts\)"), worker.Output);
            Assert.Matches(TransferLine(@"127\.0\.0\.1:\d+ \(this host only; --kv-transfer-host 0\.0\.0\.0 accepts other hosts\)"), worker.Output);

            IPEndPoint[] frontendSockets = [.. ListeningSockets.Of(frontend.Pid)];
            IPEndPoint[] workerSockets = [.. ListeningSockets.Of(worker.Pid)];
            Assert.Single(frontendSockets);
            Assert.Equal(2, workerSockets.Length);
            Assert.All(frontendSockets.Concat(workerSockets), s => Assert.True(IPAddress.IsLoopback(s.Address), $"{s} listens beyond this host"));
        }

        await using (DynamoProcess frontend = DynamoProcess.Start(["frontend", "--http-port", "0", "--http-host", "0.0.0.0"], env))
        await using (DynamoProcess worker = DynamoProcess.Start(
            ["worker", "--engine", "echo", "--model", TestModels.Tiny.Value, "--system-port", "0", "--system-host", "0.0.0.0", "--kv-transfer-host", "0.0.0.0"], env))
        {
            await frontend.WaitForLineAsync("frontend: listening on 0.0.0.0:");
            await worker.WaitForLineAsync("worker: /metrics, /health and /live on ");
            Assert.Matches(SystemLine(@"0\.0\.0\.0:\d+ \(every interface\)"), worker.Output);
            Assert.Matches(TransferLine(@"0\.0\.0\.0:\d+ \(every interface\)"), worker.Output);

            IPEndPoint[] all = [.. ListeningSockets.Of(frontend.Pid), .. ListeningSockets.Of(worker.Pid)];
            Assert.Equal(3, all.Length);
            Assert.All(all, s => Assert.True(s.Address.Equals(IPAddress.Any) || s.Address.Equals(IPAddress.IPv6Any), $"{s} is not every interface"));
        }
    }

    private static Regex SystemLine(string bind) => new("worker: /metrics, /health and /live on " + bind);

    private static Regex TransferLine(string bind) => new(@"worker: KV from prefill workers arrives at tcp://\S+, listening on " + bind);
}

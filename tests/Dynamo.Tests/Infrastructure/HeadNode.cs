namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// The guides' head node in a network namespace: nats-server and etcd bound to the host's 10.x address, and the
/// NATS_SERVER / ETCD_ENDPOINTS every other node exports to reach them.
/// </summary>
public sealed class HeadNode : IAsyncDisposable
{
    private HeadNode(NatsServer nats, EtcdServer etcd, string address)
    {
        Nats = nats;
        Etcd = etcd;
        Environment = new Dictionary<string, string>
        {
            ["NATS_SERVER"] = $"nats://{address}:{nats.Port}",
            ["ETCD_ENDPOINTS"] = $"{address}:{etcd.ClientPort}",
        };
    }

    public NatsServer Nats { get; }

    public EtcdServer Etcd { get; }

    /// <summary>NATS_SERVER and ETCD_ENDPOINTS as the other nodes export them (a fresh copy: callers may add to it).</summary>
    public Dictionary<string, string> Environment { get; }

    /// <summary>
    /// Starts nats-server and etcd in <paramref name="net"/>'s host <paramref name="host"/>, bound to its address.
    /// <paramref name="asCompose"/>: as deploy/docker-compose.yml publishes them, NATS (JetStream) on 4222 and etcd on
    /// 2379, reachable from the head node itself on 127.0.0.1 too, so its own processes need no NATS_SERVER or
    /// ETCD_ENDPOINTS (the guides' node 1).
    /// </summary>
    public static async Task<HeadNode> StartAsync(NetworkNamespaces net, int host = 1, bool asCompose = false)
    {
        NatsServer nats = asCompose
            ? await NatsServer.StartAsync(netns: net.Host(host), bindAddress: "0.0.0.0", port: 4222)
            : await NatsServer.StartAsync(netns: net.Host(host), bindAddress: net.Address(host));
        try
        {
            EtcdServer etcd = await EtcdServer.StartAsync(netns: net.Host(host), bindAddress: net.Address(host), loopbackToo: asCompose);
            return new HeadNode(nats, etcd, net.Address(host));
        }
        catch
        {
            await nats.DisposeAsync();
            throw;
        }
    }

    /// <summary>`./dynamo call dynamo.{component}.generate --prompt ...` from <paramref name="net"/>'s host <paramref name="host"/>: the text it printed (exit 0 asserted).</summary>
    public async Task<string> CallAsync(NetworkNamespaces net, string component, string prompt, int host = 3)
    {
        await using DynamoProcess call = DynamoProcess.Start(["call", $"dynamo.{component}.generate", "--prompt", prompt, "--max-tokens", "24"], Environment, net.Host(host));
        int code = await call.WaitForExitAsync(60);
        Assert.True(code == 0, call.Output);
        return call.Stdout;
    }

    public async ValueTask DisposeAsync()
    {
        await Etcd.DisposeAsync();
        await Nats.DisposeAsync();
    }
}

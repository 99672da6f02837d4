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

    public static async Task<HeadNode> StartAsync(NetworkNamespaces net, int host = 1)
    {
        NatsServer nats = await NatsServer.StartAsync(netns: net.Host(host), bindAddress: net.Address(host));
        try
        {
            EtcdServer etcd = await EtcdServer.StartAsync(netns: net.Host(host), bindAddress: net.Address(host));
            return new HeadNode(nats, etcd, net.Address(host));
        }
        catch
        {
            await nats.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Etcd.DisposeAsync();
        await Nats.DisposeAsync();
    }
}

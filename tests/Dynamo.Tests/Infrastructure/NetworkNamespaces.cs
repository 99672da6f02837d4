using System.Globalization;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// Hosts on one machine: network namespaces joined by a bridge that lives in its own "switch" namespace,
/// host i at 10.{subnet}.0.{10+i}/24, nothing added to the root namespace. Needs root and iproute2.
/// <see cref="Cut"/> and <see cref="Heal"/> take a host's switch port down and up (a partition).
/// Disposing deletes every namespace (veths and the bridge go with them); the caller stops its
/// processes first. The <c>ip</c> runs are <see cref="IpCommand"/>'s, as for the partition fault of
/// <c>bench faults</c> (<see cref="NetworkNamespace"/>: one namespace linked to the root one).
/// </summary>
public sealed class NetworkNamespaces : IDisposable
{
    private readonly string _prefix;
    private readonly int _subnet;

    private NetworkNamespaces(string prefix, int subnet, int hosts)
    {
        _prefix = prefix;
        _subnet = subnet;
        Hosts = hosts;
    }

    public int Hosts { get; }

    public string Switch => $"{_prefix}sw";

    /// <summary>The namespace name of host <paramref name="i"/> (1-based).</summary>
    public string Host(int i) => $"{_prefix}h{i}";

    /// <summary>The address of host <paramref name="i"/>.</summary>
    public string Address(int i) => string.Create(CultureInfo.InvariantCulture, $"10.{_subnet}.0.{10 + i}");

    public static NetworkNamespaces Create(int hosts)
    {
        if (IpCommand.Unavailable() is string why)
        {
            Assert.Fail($"network-namespace tests: {why} (CI runs as root)");
        }

        string prefix = "dyn" + Guid.NewGuid().ToString("N")[..6];
        int subnet = 100 + Random.Shared.Next(0, 150);
        var n = new NetworkNamespaces(prefix, subnet, hosts);
        try
        {
            Ip($"netns add {n.Switch}");
            Ip($"-n {n.Switch} link set lo up");
            Ip($"-n {n.Switch} link add br0 type bridge");
            Ip($"-n {n.Switch} link set br0 up");
            for (int i = 1; i <= hosts; i++)
            {
                Ip($"netns add {n.Host(i)}");
                Ip($"-n {n.Host(i)} link set lo up");
                Ip($"-n {n.Switch} link add veth{i} type veth peer name eth0 netns {n.Host(i)}");
                Ip($"-n {n.Switch} link set veth{i} master br0");
                Ip($"-n {n.Switch} link set veth{i} up");
                Ip($"-n {n.Host(i)} addr add {n.Address(i)}/24 dev eth0");
                Ip($"-n {n.Host(i)} link set eth0 up");
            }
        }
        catch
        {
            n.Dispose();
            throw;
        }

        return n;
    }

    /// <summary>Takes host <paramref name="i"/>'s switch port down: its packets go nowhere.</summary>
    public void Cut(int i) => Ip($"-n {Switch} link set veth{i} down");

    /// <summary>Brings host <paramref name="i"/>'s switch port back.</summary>
    public void Heal(int i) => Ip($"-n {Switch} link set veth{i} up");

    public void Dispose()
    {
        for (int i = 1; i <= Hosts; i++)
        {
            TryIp($"netns del {Host(i)}");
        }

        TryIp($"netns del {Switch}");
    }

    private static void Ip(string args) => IpCommand.Run(args);

    private static void TryIp(string args) => IpCommand.TryRun(args);
}

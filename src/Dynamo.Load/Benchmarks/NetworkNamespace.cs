using System.Globalization;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// One network namespace joined to this one by a veth pair: <see cref="HostAddress"/>/30 on the host side
/// (<see cref="HostLink"/>, in this namespace), <see cref="Address"/>/30 on <c>eth0</c> inside, loopback up inside,
/// and no other route: a process started through <see cref="Exec"/> reaches its own loopback and the host side's
/// address (where a bench binds nats-server and etcd), nothing else. The names and the /30 in 10.248.0.0/16 come
/// from an id (the bench's process id), so that runs side by side do not meet.
/// <see cref="Cut"/> takes <c>eth0</c> down from inside: packets either way are dropped at the pair, while the host
/// side keeps its address and route (its servers stay reachable here, and nothing meant for the namespace leaves
/// by the default route); <see cref="Restore"/> brings it up. Disposing deletes the pair and the namespace; stop
/// the processes inside first.
/// </summary>
internal sealed class NetworkNamespace : IDisposable
{
    private const string InnerLink = "eth0";

    private NetworkNamespace(int id)
    {
        Name = Invariant($"dynamo-net-{id}");
        HostLink = Invariant($"dynv{id}");
        int block = id % 16384 * 4;
        HostAddress = Invariant($"10.248.{block / 256}.{block % 256 + 1}");
        Address = Invariant($"10.248.{block / 256}.{block % 256 + 2}");
    }

    /// <summary>The namespace's name (<c>ip netns</c>).</summary>
    public string Name { get; }

    /// <summary>The host side of the pair, in this namespace.</summary>
    public string HostLink { get; }

    /// <summary>The host side's address: what processes inside reach.</summary>
    public string HostAddress { get; }

    /// <summary>The address inside the namespace (its <c>eth0</c>).</summary>
    public string Address { get; }

    /// <summary>The command prefix that runs a program inside: <c>ip netns exec NAME</c> (the program keeps its process id).</summary>
    public IReadOnlyList<string> Exec => [IpCommand.FileName, "netns", "exec", Name];

    /// <summary>
    /// Builds the namespace and its pair for <paramref name="id"/>. <see cref="NotSupportedException"/> (saying why)
    /// without Linux, root or <c>ip</c>; <see cref="IOException"/> when an <c>ip</c> step fails or the /30 is in use.
    /// </summary>
    public static NetworkNamespace Create(int id)
    {
        if (IpCommand.Unavailable() is string why)
        {
            throw new NotSupportedException(why);
        }

        var n = new NetworkNamespace(id);
        if (IpCommand.Run($"-o addr show to {n.HostAddress}/30").Trim().Length > 0)
        {
            throw new IOException($"{n.HostAddress}/30 is already in use on this host (a namespace {n.Name} left over? ip netns del {n.Name})");
        }

        try
        {
            IpCommand.Run($"netns add {n.Name}");
            IpCommand.Run($"-n {n.Name} link set lo up");
            IpCommand.Run($"link add {n.HostLink} type veth peer name {InnerLink} netns {n.Name}");
            IpCommand.Run($"addr add {n.HostAddress}/30 dev {n.HostLink}");
            IpCommand.Run($"link set {n.HostLink} up");
            IpCommand.Run($"-n {n.Name} addr add {n.Address}/30 dev {InnerLink}");
            IpCommand.Run($"-n {n.Name} link set {InnerLink} up");
        }
        catch
        {
            n.Dispose();
            throw;
        }

        return n;
    }

    /// <summary>Takes the link down from inside: nothing passes either way.</summary>
    public void Cut() => IpCommand.Run($"-n {Name} link set {InnerLink} down");

    /// <summary>Brings the link back up.</summary>
    public void Restore() => IpCommand.Run($"-n {Name} link set {InnerLink} up");

    /// <summary>Deletes the pair (both ends at once, even while a process still holds the namespace) and the namespace.</summary>
    public void Dispose()
    {
        IpCommand.TryRun($"link del {HostLink}");
        IpCommand.TryRun($"netns del {Name}");
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

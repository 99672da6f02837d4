using System.Net;
using System.Net.Sockets;
using Dynamo.Load.Benchmarks;

namespace Dynamo.Tests.Load.Benchmarks;

/// <summary>
/// The namespace of the partition fault of <c>bench faults</c>: a process inside reaches the host side of its link
/// until the link is cut, again once restored; disposing leaves no namespace and no link behind. And the reasons
/// <see cref="IpCommand"/> gives when it cannot build one.
/// </summary>
public sealed class NetworkNamespaceTests
{
    [Fact]
    public async Task Create_CutRestoreDispose_ReachesHostSideOnlyWhileLinked()
    {
        if (IpCommand.Unavailable() is string why)
        {
            Assert.Fail($"network-namespace tests: {why} (CI runs as root)");
        }

        NetworkNamespace network = NetworkNamespace.Create(Environment.ProcessId);
        using (network)
        {
            using var listener = new TcpListener(IPAddress.Parse(network.HostAddress), 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;

            Assert.True(await ConnectsFromInsideAsync(network, port));
            network.Cut();
            Assert.False(await ConnectsFromInsideAsync(network, port));
            network.Restore();
            Assert.True(await ConnectsFromInsideAsync(network, port));
        }

        Assert.DoesNotContain(network.Name, IpCommand.Run("netns list"));
        Assert.DoesNotContain(network.HostLink + "@", IpCommand.Run("-br link"));
    }

    [Theory]
    [InlineData(false, true, "/usr/sbin/ip", "network namespaces need Linux")]
    [InlineData(true, false, "/usr/sbin/ip", "network namespaces need root")]
    [InlineData(true, true, null, "apt-get install -y iproute2")]
    public void Unavailable_MissingPrerequisite_SaysWhich(bool linux, bool privileged, string? ip, string expected)
    {
        Assert.Contains(expected, IpCommand.Unavailable(linux, privileged, ip));
    }

    [Fact]
    public void Unavailable_LinuxRootAndIp_Null()
    {
        Assert.Null(IpCommand.Unavailable(linux: true, privileged: true, ip: "/usr/sbin/ip"));
    }

    /// <summary>Whether a TCP connection from inside the namespace to the host side's <paramref name="port"/> opens within 2 s.</summary>
    private static async Task<bool> ConnectsFromInsideAsync(NetworkNamespace network, int port)
    {
        await using ChildProcess probe = ChildProcess.Start("probe", network.Exec[0],
            [.. network.Exec.Skip(1), "timeout", "2", "bash", "-c", $"echo > /dev/tcp/{network.HostAddress}/{port}"]);
        return await probe.WaitForExitAsync(TimeSpan.FromSeconds(10)) == 0;
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;
using NATS.Client.Core;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>NatsConnectionFactory against a real nats-server or none; timing collection: these bound how long a failed connect takes.</summary>
[Collection(TimingCollection.Name)]
public sealed class NatsConnectionFactoryTests
{
    [Fact]
    public async Task ConnectAsync_RunningServer_OpenConnection()
    {
        await using NatsServer nats = await NatsServer.StartAsync();

        await using NatsConnection connection = await NatsConnectionFactory.ConnectAsync(NatsPlaneOptions.Default with { Url = nats.Url });

        Assert.Equal(NatsConnectionState.Open, connection.ConnectionState);
    }

    [Fact]
    public async Task ConnectAsync_NothingListening_ClearErrorAtOnce()
    {
        int port = ClosedPort();
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<NatsUnavailableException>(() =>
            NatsConnectionFactory.ConnectAsync(NatsPlaneOptions.Default with { Url = $"127.0.0.1:{port}" }));

        Assert.StartsWith($"NATS at nats://127.0.0.1:{port} is unreachable (NATS_SERVER): ", error.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task ConnectAsync_ListenerThatNeverSpeaks_FailsWithinConnectTimeout()
    {
        using var mute = new TcpListener(IPAddress.Loopback, 0);
        mute.Start();
        int port = ((IPEndPoint)mute.LocalEndpoint).Port;
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<NatsUnavailableException>(() =>
            NatsConnectionFactory.ConnectAsync(NatsPlaneOptions.Default with { Url = $"nats://127.0.0.1:{port}", ConnectTimeout = TimeSpan.FromMilliseconds(800) }));

        Assert.Contains($"nats://127.0.0.1:{port} is unreachable (NATS_SERVER)", error.Message);
        // Not before the timeout, and not hanging (the client alone would keep trying); the upper bound is
        // loose: 3.6 s was seen once while the whole suite ran in parallel on two cores.
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(700), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task ConnectAsync_BadUrl_ArgumentExceptionBeforeConnecting()
    {
        var error = await Assert.ThrowsAsync<ArgumentException>(() => NatsConnectionFactory.ConnectAsync(NatsPlaneOptions.Default with { Url = "http://x:1" }));

        Assert.Contains("NATS_SERVER", error.Message);
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

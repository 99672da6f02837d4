using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;
using NATS.Client.Core;
using Xunit.Abstractions;
using static Dynamo.Tests.Runtime.RequestPlane.TestHandlers;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>
/// What only the NATS plane has (the wire, heartbeats, a dead link, a restarted server), against a real
/// nats-server, server and client on separate connections (two processes as far as NATS can tell). Each test
/// gets its own server. The contract both planes keep is in <see cref="RequestPlaneContractTests"/>.
/// </summary>
[Collection(TimingCollection.Name)]
public sealed partial class NatsRequestPlaneTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Patience = Eventually.Patience;
    private readonly List<IAsyncDisposable> _cleanup = [];
    private NatsServer _nats = null!;

    public async Task InitializeAsync() => _nats = await NatsServer.StartAsync();

    public async Task DisposeAsync()
    {
        for (int i = _cleanup.Count - 1; i >= 0; i--)
        {
            try
            {
                await _cleanup[i].DisposeAsync();
            }
            catch (ObjectDisposedException)
            {
            }
        }

        await _nats.DisposeAsync();
    }

    [Fact]
    public async Task RequestStream_SubscriberThatNeverAccepts_UnreachableAfterAcceptTimeout()
    {
        NatsRequestPlane client = await PlaneAsync();
        await using INatsSub<byte[]> mute = await client.Connection.SubscribeCoreAsync<byte[]>("mute");

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() =>
            DrainAsync(client.RequestStreamAsync("mute", default, RequestOptions.Default with { AcceptTimeout = TimeSpan.FromMilliseconds(500) })));

        Assert.Equal(RequestErrorKind.Unreachable, error.Kind);
        Assert.Equal("not_accepted", error.Code);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(400), TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task RequestStream_SlowConsumer_ServerStaysWithinWindow()
    {
        const int window = 16;
        NatsRequestPlane server = await PlaneAsync(Options with { ResponseWindow = window });
        NatsRequestPlane client = await PlaneAsync();
        int produced = 0;
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Producer([EnumeratorCancellation] CancellationToken ct = default)
        {
            for (int i = 0; i < 400; i++)
            {
                Interlocked.Increment(ref produced);
                yield return BitConverter.GetBytes(i);
            }

            await Task.CompletedTask;
        }

        var serving = (NatsRequestServer)await server.ServeAsync("fast", (_, _, ct) => Producer(ct));
        _cleanup.Add(serving);

        int consumed = 0;
        int worstLead = 0;
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("fast", default, RequestOptions.Default))
        {
            Assert.Equal(consumed, BitConverter.ToInt32(item.Span));
            consumed++;
            if (consumed <= 100)
            {
                await Task.Delay(2);
                worstLead = Math.Max(worstLead, Volatile.Read(ref produced) - consumed);
            }
        }

        Assert.Equal(400, consumed);
        Assert.InRange(serving.PeakUnacknowledged, 1, window);
        Assert.InRange(worstLead, 0, window + 1);
    }

    [Fact]
    public async Task RequestStream_ProcessStalledLongerThanIdleTimeout_StreamSurvives()
    {
        NatsRequestPlane server = await PlaneAsync(Options with { HeartbeatInterval = TimeSpan.FromMilliseconds(200) });
        NatsRequestPlane client = await PlaneAsync();
        var proceed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Waiting([EnumeratorCancellation] CancellationToken ct = default)
        {
            yield return new byte[] { 1 };
            await proceed.Task.WaitAsync(ct);
            yield return new byte[] { 2 };
        }

        await using IAsyncDisposable serving = await server.ServeAsync("stall", (_, _, ct) => Waiting(ct));
        var idle = TimeSpan.FromMilliseconds(700);
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task<List<byte>> reading = Task.Run(async () =>
        {
            var items = new List<byte>();
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("stall", default, RequestOptions.Default with { IdleTimeout = idle }))
            {
                items.Add(item.Span[0]);
                first.TrySetResult();
            }

            return items;
        });
        await first.Task.WaitAsync(Patience);

        // The whole process stops (every pool thread blocked) for longer than the client's idle timeout, with
        // the client waiting for a frame: when it resumes, its timer is overdue and so is the server's heartbeat.
        using (new ThreadPoolSaturation())
        {
            Thread.Sleep(idle + TimeSpan.FromMilliseconds(500));
        }

        proceed.SetResult();
        Assert.Equal([1, 2], await reading.WaitAsync(Patience));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task RequestStream_ServerConnectionDropsMidStream_UnreachableWithinIdleTimeout()
    {
        var serverConnection = await NatsConnectionFactory.ConnectAsync(Options);
        var server = new NatsRequestPlane(serverConnection, Options);
        _cleanup.Add(server);
        NatsRequestPlane client = await PlaneAsync();
        await server.ServeAsync("fragile", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(50), null, ct));
        var idle = TimeSpan.FromMilliseconds(1500);

        var clock = new Stopwatch();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            int received = 0;
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("fragile", default, RequestOptions.Default with { IdleTimeout = idle }))
            {
                if (++received == 3)
                {
                    await serverConnection.DisposeAsync();
                    clock.Start();
                }
            }
        });

        Assert.Equal(RequestErrorKind.Unreachable, error.Kind);
        Assert.True(error.InstanceFailed);
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, idle + TimeSpan.FromSeconds(1.5));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task RequestStream_NatsServerKilledMidStream_UnavailableWithinUnavailableTimeout()
    {
        NatsRequestPlane server = await PlaneAsync();
        var bound = TimeSpan.FromMilliseconds(1500);
        NatsRequestPlane client = await PlaneAsync(Options with { UnavailableTimeout = bound });
        await server.ServeAsync("doomed", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(50), null, ct));

        // Both sides lose NATS: the stream waits for the client's own connection at most the bound (a NATS
        // restart that short is survived), then fails as the request plane's, not the instance's, fault.
        var clock = new Stopwatch();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            int received = 0;
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("doomed", default, RequestOptions.Default with { IdleTimeout = TimeSpan.FromSeconds(5) }))
            {
                if (++received == 3)
                {
                    _nats.Kill();
                    clock.Start();
                }
            }
        });

        Assert.Equal(RequestErrorKind.Unavailable, error.Kind);
        Assert.Equal("request_plane_unavailable", error.Code);
        Assert.True(error.Reissuable);
        Assert.False(error.InstanceFailed);
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, bound + TimeSpan.FromSeconds(2));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("2")]
    [InlineData("one")]
    public async Task ServeAsync_RequestWithoutSupportedVersion_ErrorFrameAndServerKeepsServing(string? version)
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => One("ok"));
        NatsConnection raw = client.Connection;

        string inbox = raw.NewInbox();
        await using INatsSub<byte[]> replies = await raw.SubscribeCoreAsync<byte[]>(inbox);
        NatsHeaders? headers = version is null ? null : new NatsHeaders { ["Dyn-Version"] = version, ["X-Unknown"] = "ignored" };
        await raw.PublishAsync("svc", Encoding.UTF8.GetBytes("garbage"), headers, replyTo: inbox);
        NatsMsg<byte[]> reply = await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience);

        Assert.Equal("error", reply.Headers?["Dyn-Frame"].ToString());
        Assert.Equal("0", reply.Headers?["Dyn-Seq"].ToString());
        Assert.Equal("Remote", reply.Headers?["Dyn-Error-Kind"].ToString());
        Assert.Equal("unsupported_version", reply.Headers?["Dyn-Error-Code"].ToString());
        Assert.Contains("Dyn-Version", Encoding.UTF8.GetString(reply.Data!));

        await raw.PublishAsync("svc", Encoding.UTF8.GetBytes("no reply subject"));
        var items = new List<string>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("svc", default, RequestOptions.Default))
        {
            items.Add(Encoding.UTF8.GetString(item.Span));
        }

        Assert.Equal(["ok"], items);
    }

    [Fact]
    public async Task ServeAsync_MalformedTraceparent_IgnoredAndServed()
    {
        NatsRequestPlane server = await PlaneAsync();
        var seen = new TaskCompletionSource<RequestContext>(TaskCreationOptions.RunContinuationsAsynchronously);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Record(RequestContext context)
        {
            seen.TrySetResult(context);
            yield return "ok"u8.ToArray();
            await Task.CompletedTask;
        }

        await using IAsyncDisposable serving = await server.ServeAsync("svc", (context, _, _) => Record(context));
        NatsRequestPlane client = await PlaneAsync();
        NatsConnection raw = client.Connection;
        string inbox = raw.NewInbox();
        await using INatsSub<byte[]> replies = await raw.SubscribeCoreAsync<byte[]>(inbox);
        await raw.PublishAsync("svc", Array.Empty<byte>(), new NatsHeaders { ["Dyn-Version"] = "1", ["Dyn-Request-Id"] = "bad-trace", ["traceparent"] = "00-not-a-trace-01", ["tracestate"] = "x=1" }, replyTo: inbox);
        NatsMsg<byte[]> accept = await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.Equal("accept", accept.Headers?["Dyn-Frame"].ToString());
        RequestContext context = await seen.Task.WaitAsync(Patience);
        Assert.Equal("bad-trace", context.RequestId);
        Assert.Equal(default, context.TraceParent);
    }

    [Fact]
    public async Task ServeAsync_ClientProcessDiesWithoutCancel_HandlerCancelled()
    {
        NatsRequestPlane server = await PlaneAsync();
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(100), handlerCancelled, ct));
        NatsConnection raw = await NatsConnectionFactory.ConnectAsync(Options);

        string inbox = raw.NewInbox();
        INatsSub<byte[]> replies = await raw.SubscribeCoreAsync<byte[]>(inbox);
        await raw.PublishAsync("svc", Array.Empty<byte>(), new NatsHeaders { ["Dyn-Version"] = "1", ["Dyn-Request-Id"] = "gone" }, replyTo: inbox);
        NatsMsg<byte[]> accept = await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.Equal("accept", accept.Headers?["Dyn-Frame"].ToString());
        Assert.StartsWith("_DYN_CTL.", accept.Headers?["Dyn-Ctl-Subject"].ToString());
        await raw.DisposeAsync();

        var clock = Stopwatch.StartNew();
        await handlerCancelled.Task.WaitAsync(Patience);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1.5), $"handler cancelled {clock.Elapsed} after the client went away");
    }

    [Fact]
    public async Task ServeAsync_ClientNeverAcknowledges_HandlerCancelledAfterAckTimeout()
    {
        NatsRequestPlane server = await PlaneAsync(Options with { ResponseWindow = 8, AckTimeout = TimeSpan.FromMilliseconds(800) });
        NatsRequestPlane client = await PlaneAsync();
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var produced = new StrongBox<int>();
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => Endless(produced, handlerCancelled, ct));
        NatsConnection raw = client.Connection;
        string inbox = raw.NewInbox();
        await using INatsSub<byte[]> replies = await raw.SubscribeCoreAsync<byte[]>(inbox);
        await raw.PublishAsync("svc", Array.Empty<byte>(), new NatsHeaders { ["Dyn-Version"] = "1" }, replyTo: inbox);

        await handlerCancelled.Task.WaitAsync(Patience);
        Assert.InRange(Volatile.Read(ref produced.Value), 8, 9);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task RequestStream_NatsServerRestartedOnSamePort_BothSidesReconnectAndServe()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => One("ok"));
        Assert.Equal(["ok"], await StringsAsync(client.RequestStreamAsync("svc", default, RequestOptions.Default)));

        _nats.Kill();
        await Eventually.WaitUntilAsync(() => server.Connection.ConnectionState != NatsConnectionState.Open && client.Connection.ConnectionState != NatsConnectionState.Open, "both connections to notice");
        await _nats.RestartAsync();
        await Eventually.WaitUntilAsync(() => server.Connection.ConnectionState == NatsConnectionState.Open && client.Connection.ConnectionState == NatsConnectionState.Open, "both connections to reopen");

        // The server's subscriptions are restored as its connection reopens; allow a moment for that.
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                Assert.Equal(["ok"], await StringsAsync(client.RequestStreamAsync("svc", default, RequestOptions.Default)));
                break;
            }
            catch (RequestPlaneException e) when (e.Kind == RequestErrorKind.NoResponders && clock.Elapsed < TimeSpan.FromSeconds(5))
            {
                await Task.Delay(50);
            }
        }
    }

    private NatsPlaneOptions Options => NatsPlaneOptions.Default with { Url = _nats.Url };

    private async Task<NatsRequestPlane> PlaneAsync(NatsPlaneOptions? options = null)
    {
        NatsRequestPlane plane = await NatsRequestPlane.ConnectAsync((options ?? Options) with { Url = _nats.Url });
        _cleanup.Add(plane);
        return plane;
    }

}

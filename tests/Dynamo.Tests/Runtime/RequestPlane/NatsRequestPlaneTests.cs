using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;
using NATS.Client.Core;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>
/// NatsRequestPlane against a real nats-server, server and client on separate connections (two processes
/// as far as NATS can tell). Each test gets its own server.
/// </summary>
public sealed class NatsRequestPlaneTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
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
    public async Task RequestStream_ThousandResponses_ArriveCompleteAndInOrder()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("gen", (_, payload, ct) => Count(BitConverter.ToInt32(payload.Span), ct));

        var received = new List<int>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("gen", BitConverter.GetBytes(1000), RequestOptions.Default))
        {
            received.Add(BitConverter.ToInt32(item.Span));
        }

        Assert.Equal(Enumerable.Range(0, 1000), received);
    }

    [Fact]
    public async Task RequestStream_ManyConcurrentStreams_AllComplete()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("gen", (_, payload, ct) => Count(BitConverter.ToInt32(payload.Span), ct));

        int[] counts = await Task.WhenAll(Enumerable.Range(0, 20).Select(async _ =>
        {
            int n = 0;
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("gen", BitConverter.GetBytes(300), RequestOptions.Default))
            {
                Assert.Equal(n++, BitConverter.ToInt32(item.Span));
            }

            return n;
        }));

        Assert.All(counts, c => Assert.Equal(300, c));
    }

    [Fact]
    public async Task RequestStream_HandlerThrows_RemoteErrorWithMessageAndInternalCode()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("boom", (_, _, ct) => ThrowAfter(2, new InvalidOperationException("the model fell over"), ct));

        var received = new List<ReadOnlyMemory<byte>>();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("boom", default, RequestOptions.Default))
            {
                received.Add(item);
            }
        });

        Assert.Equal(2, received.Count);
        Assert.Equal(RequestErrorKind.Remote, error.Kind);
        Assert.Equal("internal", error.Code);
        Assert.Equal("the model fell over", error.Message);
        Assert.False(error.InstanceFailed);
    }

    [Fact]
    public async Task RequestStream_EndpointException_CodeAndMessageReachClient()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("strict", (_, _, ct) => ThrowAfter(0, new EndpointException("invalid_request", "max_tokens must be positive"), ct));

        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("strict", default, RequestOptions.Default)));

        Assert.Equal(RequestErrorKind.Remote, error.Kind);
        Assert.Equal("invalid_request", error.Code);
        Assert.Equal("max_tokens must be positive", error.Message);
    }

    [Fact]
    public async Task RequestStream_NothingServesSubject_NoRespondersWithinOneSecond()
    {
        NatsRequestPlane client = await PlaneAsync();

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("nobody.home", default, RequestOptions.Default)));

        Assert.Equal(RequestErrorKind.NoResponders, error.Kind);
        Assert.True(error.InstanceFailed);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
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
    public async Task RequestStream_ClientCancelsMidStream_HandlerTokenCancelledWithinOneSecond()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using IAsyncDisposable serving = await server.ServeAsync("slow", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(20), handlerCancelled, ct));

        using var cts = new CancellationTokenSource();
        int received = 0;
        var clock = new Stopwatch();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("slow", default, RequestOptions.Default, cts.Token))
            {
                if (++received == 3)
                {
                    clock.Start();
                    await cts.CancelAsync();
                }
            }
        });

        await handlerCancelled.Task.WaitAsync(Patience);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"handler cancelled {clock.Elapsed} after the client");
        await WaitUntilAsync(() => ((NatsRequestServer)serving).ActiveCount == 0);
    }

    [Fact]
    public async Task RequestStream_EnumerationAbandonedEarly_HandlerTokenCancelledWithinOneSecond()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using IAsyncDisposable serving = await server.ServeAsync("slow", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(20), handlerCancelled, ct));

        int received = 0;
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("slow", default, RequestOptions.Default))
        {
            if (++received == 3)
            {
                break;
            }
        }

        var clock = Stopwatch.StartNew();
        await handlerCancelled.Task.WaitAsync(Patience);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"handler cancelled {clock.Elapsed} after the client left");
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
    public async Task RequestStream_HandlerSilentLongerThanIdleTimeout_HeartbeatsKeepStreamAlive()
    {
        NatsRequestPlane server = await PlaneAsync(Options with { HeartbeatInterval = TimeSpan.FromMilliseconds(200) });
        NatsRequestPlane client = await PlaneAsync();
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Pondering([EnumeratorCancellation] CancellationToken ct = default)
        {
            yield return new byte[] { 1 };
            await Task.Delay(1500, ct);
            yield return new byte[] { 2 };
        }

        await using IAsyncDisposable serving = await server.ServeAsync("think", (_, _, ct) => Pondering(ct));

        var items = new List<byte>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("think", default, RequestOptions.Default with { IdleTimeout = TimeSpan.FromMilliseconds(700) }))
        {
            items.Add(item.Span[0]);
        }

        Assert.Equal([1, 2], items);
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
    public async Task RequestStream_NatsServerKilledMidStream_UnreachableWithinIdleTimeout()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await server.ServeAsync("doomed", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(50), null, ct));
        var idle = TimeSpan.FromMilliseconds(1500);

        var clock = new Stopwatch();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            int received = 0;
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("doomed", default, RequestOptions.Default with { IdleTimeout = idle }))
            {
                if (++received == 3)
                {
                    _nats.Kill();
                    clock.Start();
                }
            }
        });

        Assert.Equal(RequestErrorKind.Unreachable, error.Kind);
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, idle + TimeSpan.FromSeconds(1.5));
    }

    [Fact]
    public async Task RequestStream_DeadlinePasses_DeadlineExceededAndHandlerCancelled()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        RequestContext? seen = null;
        await using IAsyncDisposable serving = await server.ServeAsync("late", (context, _, ct) =>
        {
            seen = context;
            return Forever(TimeSpan.FromMilliseconds(100), handlerCancelled, ct);
        });

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() =>
            DrainAsync(client.RequestStreamAsync("late", default, RequestOptions.Default with { Deadline = TimeSpan.FromMilliseconds(600), RequestId = "r-42" })));

        Assert.Equal(RequestErrorKind.DeadlineExceeded, error.Kind);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(3));
        await handlerCancelled.Task.WaitAsync(Patience);
        Assert.Equal("r-42", seen!.RequestId);
        Assert.NotNull(seen.Deadline);
    }

    [Fact]
    public async Task ServeAsync_TwoServersInQueueGroup_RequestsSpreadOverBoth()
    {
        NatsRequestPlane first = await PlaneAsync();
        NatsRequestPlane second = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable a = await first.ServeAsync("shared", (_, _, ct) => One("a"), queueGroup: "workers");
        await using IAsyncDisposable b = await second.ServeAsync("shared", (_, _, ct) => One("b"), queueGroup: "workers");

        var tally = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0 };
        for (int i = 0; i < 100; i++)
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("shared", default, RequestOptions.Default))
            {
                tally[Encoding.UTF8.GetString(item.Span)]++;
            }
        }

        Assert.Equal(100, tally["a"] + tally["b"]);
        Assert.True(tally["a"] >= 20 && tally["b"] >= 20, $"a={tally["a"]} b={tally["b"]}");
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
        int produced = 0;
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Endless([EnumeratorCancellation] CancellationToken ct = default)
        {
            try
            {
                while (true)
                {
                    Interlocked.Increment(ref produced);
                    yield return new byte[] { 7 };
                    await Task.Yield();
                }
            }
            finally
            {
                if (ct.IsCancellationRequested)
                {
                    handlerCancelled.TrySetResult();
                }
            }
        }

        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => Endless(ct));
        NatsConnection raw = client.Connection;
        string inbox = raw.NewInbox();
        await using INatsSub<byte[]> replies = await raw.SubscribeCoreAsync<byte[]>(inbox);
        await raw.PublishAsync("svc", Array.Empty<byte>(), new NatsHeaders { ["Dyn-Version"] = "1" }, replyTo: inbox);

        await handlerCancelled.Task.WaitAsync(Patience);
        Assert.InRange(Volatile.Read(ref produced), 8, 9);
    }

    [Fact]
    public async Task RequestStream_PayloadOverServerMaxPayload_TransportError()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("big", (_, _, ct) => One("never"));

        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("big", new byte[2 * 1024 * 1024], RequestOptions.Default)));

        Assert.Equal(RequestErrorKind.Transport, error.Kind);
        Assert.Equal("payload_too_large", error.Code);
        Assert.Contains("max_payload", error.Message);
    }

    [Fact]
    public async Task DisposeServing_InFlightRequest_ClientGetsServerStopped()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(20), handlerCancelled, ct));

        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            int received = 0;
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("svc", default, RequestOptions.Default))
            {
                if (++received == 2)
                {
                    _ = Task.Run(async () => await serving.DisposeAsync());
                }
            }
        });

        Assert.Equal(RequestErrorKind.Unreachable, error.Kind);
        Assert.Equal("server_stopped", error.Code);
        await handlerCancelled.Task.WaitAsync(Patience);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task RequestStream_NatsServerRestartedOnSamePort_BothSidesReconnectAndServe()
    {
        NatsRequestPlane server = await PlaneAsync();
        NatsRequestPlane client = await PlaneAsync();
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => One("ok"));
        Assert.Equal(["ok"], await CollectStringsAsync(client, "svc"));

        _nats.Kill();
        await WaitUntilAsync(() => server.Connection.ConnectionState != NatsConnectionState.Open && client.Connection.ConnectionState != NatsConnectionState.Open);
        await _nats.RestartAsync();
        await WaitUntilAsync(() => server.Connection.ConnectionState == NatsConnectionState.Open && client.Connection.ConnectionState == NatsConnectionState.Open);

        // The server's subscriptions are restored as its connection reopens; allow a moment for that.
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                Assert.Equal(["ok"], await CollectStringsAsync(client, "svc"));
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

    private static async Task<List<string>> CollectStringsAsync(NatsRequestPlane client, string subject)
    {
        var items = new List<string>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync(subject, default, RequestOptions.Default))
        {
            items.Add(Encoding.UTF8.GetString(item.Span));
        }

        return items;
    }

    private static async Task DrainAsync(IAsyncEnumerable<ReadOnlyMemory<byte>> stream)
    {
        await foreach (ReadOnlyMemory<byte> _ in stream)
        {
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < Patience, "condition not met in time");
            await Task.Delay(20);
        }
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Count(int n, [EnumeratorCancellation] CancellationToken ct = default)
    {
        for (int i = 0; i < n; i++)
        {
            ct.ThrowIfCancellationRequested();
            yield return BitConverter.GetBytes(i);
        }

        await Task.CompletedTask;
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> One(string text)
    {
        yield return Encoding.UTF8.GetBytes(text);
        await Task.CompletedTask;
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> ThrowAfter(int count, Exception error, [EnumeratorCancellation] CancellationToken ct = default)
    {
        for (int i = 0; i < count; i++)
        {
            yield return new byte[] { (byte)i };
        }

        await Task.Yield();
        throw error;
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Forever(TimeSpan every, TaskCompletionSource? cancelled, [EnumeratorCancellation] CancellationToken ct = default)
    {
        // Observed in finally, not with ct.Register: cancellation callbacks run last-registered first, so
        // Task.Delay's callback can end this iterator (disposing a registration) before a registered
        // callback runs; the token's state is set before any callback runs.
        try
        {
            for (int i = 0; ; i++)
            {
                yield return BitConverter.GetBytes(i);
                await Task.Delay(every, ct);
            }
        }
        finally
        {
            if (ct.IsCancellationRequested)
            {
                cancelled?.TrySetResult();
            }
        }
    }
}

using System.Runtime.CompilerServices;
using Dynamo.Runtime.RequestPlane;
using NATS.Client.Core;
using static Dynamo.Tests.Runtime.RequestPlane.TestHandlers;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>
/// When a side freezes or vanishes, or NATS itself goes away and comes back (README.md, "Liveness" and
/// "Surviving a NATS restart"). Keepalives and heartbeats every 200 ms, so that the checks take a second.
/// </summary>
public sealed partial class NatsRequestPlaneTests
{
    private static readonly TimeSpan Keepalive = TimeSpan.FromMilliseconds(200);

    private NatsPlaneOptions KeepaliveOptions => Options with { HeartbeatInterval = Keepalive };

    [Fact]
    public async Task ServeAsync_ClientWithKeepalivesFallsSilent_HandlerCancelledWithLoggedReason()
    {
        var logger = new Infrastructure.TestOutputLogger(output, "server");
        NatsRequestPlane server = await PlaneAsync(KeepaliveOptions with { Logger = logger });
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(50), cancelled, ct));

        // A client that announces keepalives, keeps its inbox, and then sends nothing: a frozen process.
        NatsRequestPlane raw = await PlaneAsync(KeepaliveOptions);
        string inbox = raw.Connection.NewInbox();
        await using INatsSub<byte[]> replies = await raw.Connection.SubscribeCoreAsync<byte[]>(inbox);
        await raw.Connection.PublishAsync("svc", Array.Empty<byte>(), new NatsHeaders { ["Dyn-Version"] = "1", ["Dyn-Request-Id"] = "frozen", ["Dyn-Keepalive"] = "200" }, replyTo: inbox);
        NatsMsg<byte[]> accept = await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.Equal("accept", accept.Headers?["Dyn-Frame"].ToString());
        Assert.Equal("200", accept.Headers?["Dyn-Keepalive"].ToString());

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await cancelled.Task.WaitAsync(Patience);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(600), TimeSpan.FromSeconds(3));
        await Eventually.WaitUntilAsync(() => logger.Entries.Any(e => e.Id.Id == 2107 && e.Message.Contains("frozen", StringComparison.Ordinal)), "the reason to be logged");
    }

    [Fact]
    public async Task RequestStream_ConsumerTakesNothingLongerThanClientIdle_StreamSurvives()
    {
        NatsRequestPlane server = await PlaneAsync(KeepaliveOptions);
        NatsRequestPlane client = await PlaneAsync(KeepaliveOptions);
        int produced = 0;
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Counted([EnumeratorCancellation] CancellationToken ct = default)
        {
            for (int i = 0; i < 60; i++)
            {
                Interlocked.Increment(ref produced);
                yield return BitConverter.GetBytes(i);
                await Task.Delay(50, ct);
            }
        }

        await using IAsyncDisposable serving = await server.ServeAsync("slow", (_, _, ct) => Counted(ct));

        var received = new List<int>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("slow", default, RequestOptions.Default))
        {
            received.Add(BitConverter.ToInt32(item.Span));
            if (received.Count == 1)
            {
                // The consumer is busy while the handler produces 1.5 s worth (past 4 keepalive intervals):
                // the client process is alive, so its keepalives go on and the request is not cancelled.
                await Eventually.WaitUntilAsync(() => Volatile.Read(ref produced) >= 31, "the handler to run on");
            }
        }

        Assert.Equal(Enumerable.Range(0, 60), received);
    }

    [Fact]
    public async Task RequestStream_ServerFreezesAfterAccept_UnreachableAndCancelSent()
    {
        NatsRequestPlane client = await PlaneAsync(KeepaliveOptions);

        // A "server" that accepts and then freezes: its control subject is a plain subscription here.
        NatsRequestPlane frozen = await PlaneAsync(KeepaliveOptions);
        await using INatsSub<byte[]> requests = await frozen.Connection.SubscribeCoreAsync<byte[]>("frozen");
        await using INatsSub<byte[]> control = await frozen.Connection.SubscribeCoreAsync<byte[]>("ctl.frozen.1");
        await frozen.Connection.PingAsync();
        Task accepting = Task.Run(async () =>
        {
            NatsMsg<byte[]> request = await requests.Msgs.ReadAsync();
            var headers = new NatsHeaders { ["Dyn-Frame"] = "accept", ["Dyn-Seq"] = "0", ["Dyn-Ctl-Subject"] = "ctl.frozen.1", ["Dyn-Window"] = "128", ["Dyn-Keepalive"] = "200" };
            await frozen.Connection.PublishAsync(request.ReplyTo!, Array.Empty<byte>(), headers, replyTo: "ctl.frozen.1");
        });

        var idle = TimeSpan.FromMilliseconds(800);
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("frozen", default, RequestOptions.Default with { IdleTimeout = idle })));
        await accepting;
        Assert.Equal(RequestErrorKind.Unreachable, error.Kind);
        Assert.True(error.Reissuable);

        // The client gave up: it sends a cancel, which NATS holds for the frozen server's connection.
        using var timeout = new CancellationTokenSource(Patience);
        while (true)
        {
            NatsMsg<byte[]> msg = await control.Msgs.ReadAsync(timeout.Token);
            if (msg.Headers?["Dyn-Ctl"].ToString() == "cancel")
            {
                break;
            }
        }
    }

    [Fact]
    public async Task ServeAsync_ResendFromSeq_SameFramesAgainThenTheRest()
    {
        NatsRequestPlane server = await PlaneAsync(KeepaliveOptions);
        var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> ThreeThenThree([EnumeratorCancellation] CancellationToken ct = default)
        {
            for (int i = 0; i < 6; i++)
            {
                if (i == 3)
                {
                    await go.Task.WaitAsync(ct);
                }

                yield return new byte[] { (byte)i };
            }
        }

        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => ThreeThenThree(ct));
        NatsRequestPlane raw = await PlaneAsync(KeepaliveOptions);
        string inbox = raw.Connection.NewInbox();
        await using INatsSub<byte[]> replies = await raw.Connection.SubscribeCoreAsync<byte[]>(inbox);
        await raw.Connection.PublishAsync("svc", Array.Empty<byte>(), new NatsHeaders { ["Dyn-Version"] = "1", ["Dyn-Keepalive"] = "2000" }, replyTo: inbox);
        NatsMsg<byte[]> accept = await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience);
        Assert.Equal("accept", accept.Headers?["Dyn-Frame"].ToString());
        string ctl = accept.Headers!["Dyn-Ctl-Subject"].ToString();
        var first = new List<(long Seq, string Frame, byte[] Data)>();
        while (first.Count < 3)
        {
            first.Add(Frame(await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience)));
        }

        Assert.Equal([(1L, "data"), (2L, "data"), (3L, "data")], first.Select(f => (f.Seq, f.Frame)));

        // As if frames 2 and 3 were lost: the client has 0 and 1 and asks for the rest again.
        await raw.Connection.PublishAsync(ctl, headers: new NatsHeaders { ["Dyn-Version"] = "1", ["Dyn-Ctl"] = "resend", ["Dyn-Ack"] = "1", ["Dyn-Seq"] = "2" }, replyTo: inbox);
        var again = new List<(long Seq, string Frame, byte[] Data)>();
        while (again.Count < 2)
        {
            (long seq, string frame, byte[] data) = Frame(await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience));
            if (frame != "heartbeat")
            {
                again.Add((seq, frame, data));
            }
        }

        Assert.Equal([(2L, "data", 1), (3L, "data", 2)], again.Select(f => (f.Seq, f.Frame, (int)f.Data[0])));
        go.SetResult();
        var rest = new List<string>();
        while (rest.LastOrDefault() != "end")
        {
            (_, string frame, _) = Frame(await replies.Msgs.ReadAsync().AsTask().WaitAsync(Patience));
            if (frame != "heartbeat")
            {
                rest.Add(frame);
            }
        }

        Assert.Equal(["data", "data", "data", "end"], rest);
    }

    [Theory]
    [InlineData(false, "frame_gap", RequestErrorKind.Interrupted)]
    [InlineData(true, "mixed_servers", RequestErrorKind.Transport)]
    public async Task RequestStream_GapFromServerWithoutResend_FailsAtOnce(bool otherServer, string code, RequestErrorKind kind)
    {
        NatsRequestPlane client = await PlaneAsync(KeepaliveOptions);

        // An old server (no Dyn-Keepalive in its accept): a gap cannot be filled. Or a second server's frames.
        NatsRequestPlane old = await PlaneAsync(KeepaliveOptions);
        await using INatsSub<byte[]> requests = await old.Connection.SubscribeCoreAsync<byte[]>("old");
        await old.Connection.PingAsync();
        Task serving = Task.Run(async () =>
        {
            NatsMsg<byte[]> request = await requests.Msgs.ReadAsync();
            await old.Connection.PublishAsync(request.ReplyTo!, Array.Empty<byte>(), new NatsHeaders { ["Dyn-Frame"] = "accept", ["Dyn-Seq"] = "0", ["Dyn-Ctl-Subject"] = "ctl.old.1", ["Dyn-Window"] = "128" }, replyTo: "ctl.old.1");
            await old.Connection.PublishAsync(request.ReplyTo!, new byte[] { 1 }, new NatsHeaders { ["Dyn-Frame"] = "data", ["Dyn-Seq"] = otherServer ? "1" : "2" }, replyTo: otherServer ? "ctl.other.1" : "ctl.old.1");
        });

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("old", default, RequestOptions.Default)));
        await serving;
        Assert.Equal(kind, error.Kind);
        Assert.Equal(code, error.Code);
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(2));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task RequestStream_NatsDown_UnavailableWithinBoundHealthSaysSoAndServesAfterRestart()
    {
        NatsRequestPlane server = await PlaneAsync(KeepaliveOptions);
        var bound = TimeSpan.FromSeconds(1);
        NatsRequestPlane client = await PlaneAsync(KeepaliveOptions with { UnavailableTimeout = bound });
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, _) => One("ok"));
        Assert.Equal(["ok"], await StringsAsync(client.RequestStreamAsync("svc", default, RequestOptions.Default)));
        Assert.True(client.Health.IsConnected);

        _nats.Kill();
        await Eventually.WaitUntilAsync(() => client.Health is { IsConnected: false, DisconnectedSince: not null }, "the client's health to say disconnected");
        RequestPlaneHealth down = client.Health;
        Assert.Contains($"NATS at {_nats.Url}", down.Reason, StringComparison.Ordinal);
        Assert.Contains("reconnecting", down.Reason, StringComparison.Ordinal);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => StringsAsync(client.RequestStreamAsync("svc", default, RequestOptions.Default)));
        Assert.Equal(RequestErrorKind.Unavailable, error.Kind);
        Assert.Equal("request_plane_unavailable", error.Code);
        Assert.False(error.InstanceFailed);
        Assert.True(error.Reissuable);
        Assert.Contains("reconnecting", error.Message, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, bound - TimeSpan.FromMilliseconds(100), bound + TimeSpan.FromSeconds(1.5));

        await _nats.RestartAsync();
        await Eventually.WaitUntilAsync(() => client.Health.IsConnected && server.Health.IsConnected, "both planes to reconnect");
        Assert.Null(client.Health.DisconnectedSince);
        clock.Restart();
        while (!await AnswersAsync(client, "svc"))
        {
            Assert.True(clock.Elapsed < Patience, "the restored server did not answer");
            await Task.Delay(50);
        }
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task RequestStream_NatsRestartedUnderSixteenStreams_EachIntactOrTypedReissuableError()
    {
        const int streams = 16;
        const int frames = 300;
        var logger = new Infrastructure.TestOutputLogger(output, "server");
        NatsRequestPlane server = await PlaneAsync(Options with { Logger = logger });
        NatsRequestPlane client = await PlaneAsync(Options);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Tokens([EnumeratorCancellation] CancellationToken ct = default)
        {
            for (int i = 0; i < frames; i++)
            {
                yield return BitConverter.GetBytes(i);
                await Task.Delay(20, ct);
            }
        }

        await using IAsyncDisposable serving = await server.ServeAsync("gen", (_, _, ct) => Tokens(ct));
        int[] received = new int[streams];
        Task<string>[] reading = [.. Enumerable.Range(0, streams).Select(s => Task.Run(async () =>
        {
            int next = 0;
            try
            {
                await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("gen", default, RequestOptions.Default))
                {
                    int value = BitConverter.ToInt32(item.Span);
                    if (value != next)
                    {
                        return $"corrupt: {value} where {next} was due";
                    }

                    Volatile.Write(ref received[s], ++next);
                }

                return next == frames ? "intact" : $"truncated at {next}";
            }
            catch (RequestPlaneException e)
            {
                return e.Reissuable ? $"reissuable {e.Kind}/{e.Code}" : $"not reissuable {e.Kind}/{e.Code}: {e.Message}";
            }
        }))];
        await Eventually.WaitUntilAsync(() => received.All(r => r >= 20), "every stream to be under way");

        // About 2.5 s down, as measured in the field (a restart of the NATS container).
        _nats.Kill();
        await Eventually.WaitUntilAsync(() => !server.Health.IsConnected && !client.Health.IsConnected, "both planes to notice");
        await Task.Delay(TimeSpan.FromSeconds(2.5));
        await _nats.RestartAsync();

        string[] outcomes = await Task.WhenAll(reading).WaitAsync(TimeSpan.FromSeconds(60));
        foreach (IGrouping<string, string> outcome in outcomes.GroupBy(o => o))
        {
            output.WriteLine($"{outcome.Count()} x {outcome.Key}");
        }

        Assert.All(outcomes, o => Assert.True(o == "intact" || o.StartsWith("reissuable ", StringComparison.Ordinal), o));
        Assert.True(outcomes.Count(o => o == "intact") >= streams * 3 / 4, string.Join("; ", outcomes));
    }

    private static async Task<bool> AnswersAsync(NatsRequestPlane client, string subject)
    {
        try
        {
            return (await StringsAsync(client.RequestStreamAsync(subject, default, RequestOptions.Default))).SequenceEqual(["ok"]);
        }
        catch (RequestPlaneException e) when (e.Kind == RequestErrorKind.NoResponders)
        {
            return false; // the server's subscriptions are restored a moment after its connection
        }
    }

    private static (long Seq, string Frame, byte[] Data) Frame(NatsMsg<byte[]> msg) =>
        (long.Parse(msg.Headers?["Dyn-Seq"].ToString() ?? "-1", System.Globalization.CultureInfo.InvariantCulture), msg.Headers?["Dyn-Frame"].ToString() ?? "", msg.Data ?? []);
}

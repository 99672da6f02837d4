using System.Net;
using System.Net.Sockets;
using Dynamo.Components.KvTransfer;
using Dynamo.Llm.Kv;
using Dynamo.Tests.Llm.Engines;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Components.KvTransfer;

/// <summary>Ticket expiry and idle timeouts, on a clock the test moves (<see cref="ManualTimeProvider"/>): no test waits for real time to pass.</summary>
public sealed class KvTransferTimeoutTests
{
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(10);

    private static KvTransferServer Start(ManualTimeProvider clock) =>
        KvTransferServer.Start(KvTransferServerTests.Loopback with { TimeProvider = clock, IdleTimeout = Idle });

    [Fact]
    public async Task Expect_NoSenderWithinTimeout_TicketTimesOut_LaterSenderRefused()
    {
        var clock = new ManualTimeProvider();
        await using KvTransferServer server = Start(clock);
        using KvTransferTicket ticket = server.Expect("slow", TimeSpan.FromSeconds(30));

        clock.Advance(TimeSpan.FromSeconds(29));
        Assert.False(ticket.Received.IsCompleted);
        clock.Advance(TimeSpan.FromSeconds(1));

        var e = await Assert.ThrowsAsync<KvTransferException>(() => ticket.Received);
        Assert.Equal(KvTransferError.TimedOut, e.Error);
        Assert.Contains("'slow' was not received in time (no sender connected)", e.Message);
        var refused = await Assert.ThrowsAsync<KvTransferException>(() => new KvTransferClient().SendAsync(server.Address, "slow", KvTransferServerTests.Payload(1, 1, 4, 4, seed: 1)));
        Assert.Equal(KvTransferError.Refused, refused.Error);
    }

    [Fact]
    public async Task Receive_SenderStallsMidData_TicketTimesOutNamingPeer_ServerServesNext()
    {
        var clock = new ManualTimeProvider();
        await using KvTransferServer server = Start(clock);
        using KvTransferTicket ticket = server.Expect("stall");
        KvTransferPayload payload = KvTransferServerTests.Payload(2, 2, 16, 50, seed: 2);
        using Socket raw = await KvTransferServerTests.ConnectRawAsync(server);
        await raw.SendAsync(KvTransferWire.EncodeHeader("stall", payload.Layout.ToJson(), payload.Data.Length));
        await EngineContractTests.WaitUntilAsync(() => server.TransfersInProgress == 1);

        clock.Advance(Idle);

        var e = await Assert.ThrowsAsync<KvTransferException>(() => ticket.Received);
        Assert.Equal(KvTransferError.TimedOut, e.Error);
        Assert.Contains($"KV transfer 'stall' from {raw.LocalEndPoint} failed: no data for {Idle} after 0 of {payload.Data.Length} bytes", e.Message);
        (byte status, string message) = (await KvTransferServerTests.ReadReplyAsync(raw))!.Value;
        Assert.Equal((byte)2, status);
        Assert.Contains("failed on the receiver: no data for", message);
        Assert.Equal(1, server.TransfersFailed);

        using KvTransferTicket next = server.Expect("next");
        await new KvTransferClient().SendAsync(server.Address, "next", payload);
        Assert.True(KvTransferServerTests.SameData(payload, await next.Received));
    }

    [Fact]
    public async Task Receive_NoHeaderWithinIdleTimeout_ConnectionDroppedAndCounted()
    {
        var clock = new ManualTimeProvider();
        await using KvTransferServer server = Start(clock);
        using Socket raw = await KvTransferServerTests.ConnectRawAsync(server);
        await raw.SendAsync("DKV"u8.ToArray());
        Assert.Equal(Idle, await clock.NextDueAsync());

        clock.Advance(Idle);

        Assert.Null(await KvTransferServerTests.ReadReplyAsync(raw));
        await EngineContractTests.WaitUntilAsync(() => server.TransfersRefused == 1);
    }

    [Fact]
    public async Task SendAsync_ReceiverNeverReplies_TimesOutNamingWhatItWaitedFor()
    {
        var clock = new ManualTimeProvider();
        var client = new KvTransferClient(KvTransferClientOptions.Default with { TimeProvider = clock, IdleTimeout = Idle });
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        string address = $"tcp://127.0.0.1:{((IPEndPoint)listener.LocalEndPoint!).Port}";
        Task<KvTransferSendResult> send = client.SendAsync(address, "mute", KvTransferServerTests.Payload(1, 1, 4, 4, seed: 3));
        using Socket accepted = await listener.AcceptAsync();
        Assert.Equal(KvTransferWire.HeaderSize, await KvTransferWire.ReceiveExactlyAsync(accepted, new byte[KvTransferWire.HeaderSize], CancellationToken.None));

        clock.Advance(Idle);

        var e = await Assert.ThrowsAsync<KvTransferException>(() => send);
        Assert.Equal(KvTransferError.TimedOut, e.Error);
        Assert.Contains($"KV transfer 'mute' to {address}: no progress for {Idle} while ", e.Message);
        await KvTransferServerTests.ReadUntilClosedAsync(accepted);
    }
}

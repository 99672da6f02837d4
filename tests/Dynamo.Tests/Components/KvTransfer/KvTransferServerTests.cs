using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Dynamo.Components.KvTransfer;
using Dynamo.Llm.Kv;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Components.KvTransfer;

/// <summary>Transfers over real sockets on loopback: a <see cref="KvTransferClient"/> (or a hand-made sender) against a <see cref="KvTransferServer"/>.</summary>
public sealed class KvTransferServerTests
{
    internal static readonly KvTransferServerOptions Loopback = KvTransferServerOptions.Default with { BindAddress = "127.0.0.1" };

    private readonly KvTransferClient _client = new();

    internal static KvTransferPayload Payload(int layers, int kvHeads, int headDim, int tokens, int seed)
    {
        var layout = new KvTransferLayout { Layers = layers, KvHeads = kvHeads, HeadDim = headDim, Dtype = "f32", BlockSize = 16, TokenCount = tokens };
        var floats = new float[layout.ByteCount / sizeof(float)];
        var random = new Random(seed);
        for (int i = 0; i < floats.Length; i++)
        {
            floats[i] = (float)(random.NextDouble() * 2 - 1);
        }

        byte[] data = new byte[layout.ByteCount];
        Buffer.BlockCopy(floats, 0, data, 0, data.Length);
        return new KvTransferPayload(layout, data);
    }

    /// <summary>Same layout and byte-identical data.</summary>
    internal static bool SameData(KvTransferPayload expected, KvTransferPayload actual) =>
        expected.Layout == actual.Layout && expected.Data.Span.SequenceEqual(actual.Data.Span);

    /// <summary>A connection to <paramref name="server"/> that the test drives byte by byte.</summary>
    internal static async Task<Socket> ConnectRawAsync(KvTransferServer server)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, server.LocalEndPoint.Port));
        return socket;
    }

    /// <summary>Reads one reply: its status byte and message; null when the server closed the connection first.</summary>
    internal static async Task<(byte Status, string Message)?> ReadReplyAsync(Socket socket)
    {
        byte[] head = new byte[KvTransferWire.ReplySize];
        try
        {
            if (await KvTransferWire.ReceiveExactlyAsync(socket, head, CancellationToken.None) < head.Length)
            {
                return null;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            // Closed with our bytes unread: the kernel resets instead of closing.
            return null;
        }

        Assert.Equal("DKVR"u8.ToArray(), head[..4]);
        byte[] text = new byte[BitConverter.ToUInt16(head, 6)];
        Assert.Equal(text.Length, await KvTransferWire.ReceiveExactlyAsync(socket, text, CancellationToken.None));
        return (head[4], Encoding.UTF8.GetString(text));
    }

    /// <summary>2 layers x 2 KV heads x 16 dims x 500 tokens (256,000 bytes), and TinyLlama's shape at 300 tokens (13,516,800 bytes).</summary>
    [Theory]
    [InlineData(2, 2, 16, 500, 256_000)]
    [InlineData(22, 4, 64, 300, 13_516_800)]
    public async Task SendAsync_RealSizePayload_ArrivesByteIdenticalInOneExactArray(int layers, int kvHeads, int headDim, int tokens, int bytes)
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferPayload sent = Payload(layers, kvHeads, headDim, tokens, seed: tokens);
        using KvTransferTicket ticket = server.Expect("req-1");

        KvTransferSendResult result = await _client.SendAsync(server.Address, "req-1", sent);
        KvTransferPayload received = await ticket.Received;

        Assert.Equal(bytes, result.Bytes);
        Assert.True(result.Elapsed > TimeSpan.Zero);
        Assert.True(SameData(sent, received));
        Assert.True(MemoryMarshal.TryGetArray(received.Data, out ArraySegment<byte> array));
        Assert.Equal(bytes, array.Array!.Length);
        Assert.Equal(1, server.TransfersReceived);
        Assert.Equal(bytes, server.BytesReceived);
        Assert.Equal(0, server.TransfersRefused + server.TransfersFailed);
        Assert.Equal(server.LastTransferTime, server.TotalTransferTime);
        Assert.True(server.TotalTransferTime > TimeSpan.Zero);
        Assert.Equal(0, server.PendingTransfers);
    }

    [Fact]
    public async Task SendAsync_PooledBuffers_EachPayloadExactAndIntact()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback with { PoolBuffers = true });
        for (int i = 0; i < 4; i++)
        {
            KvTransferPayload sent = Payload(layers: 3, kvHeads: 2, headDim: 16, tokens: 100 + (i * 37), seed: 20 + i);
            KvTransferTicket ticket = server.Expect($"pooled-{i}");
            await _client.SendAsync(server.Address, $"pooled-{i}", sent);
            KvTransferPayload received = await ticket.Received;

            Assert.Equal(sent.Data.Length, received.Data.Length);
            Assert.True(SameData(sent, received));

            // Disposing a received ticket gives its buffer back; the outcome stays.
            ticket.Dispose();
            Assert.True(ticket.Received.IsCompletedSuccessfully);
        }

        Assert.Equal(4, server.TransfersReceived);
    }

    [Fact]
    public async Task SendAsync_MockerEmptyPayload_ArrivesWithItsTokenCount()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        var layout = new KvTransferLayout { Layers = 0, KvHeads = 0, HeadDim = 0, Dtype = "mocker", BlockSize = 16, TokenCount = 37 };
        using KvTransferTicket ticket = server.Expect("mock");

        KvTransferSendResult result = await _client.SendAsync(server.Address, "mock", new KvTransferPayload(layout, ReadOnlyMemory<byte>.Empty));
        KvTransferPayload received = await ticket.Received;

        Assert.Equal(0, result.Bytes);
        Assert.Equal(layout, received.Layout);
        Assert.True(received.Data.IsEmpty);
        Assert.Equal(1, server.TransfersReceived);
    }

    [Fact]
    public async Task SendAsync_UnknownId_RefusedWithReason()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "nobody-asked", Payload(1, 1, 4, 3, seed: 3)));

        Assert.Equal(KvTransferError.Refused, e.Error);
        Assert.Contains("unknown transfer id 'nobody-asked'", e.Message);
        Assert.Contains(server.Address, e.Message);
        Assert.Equal(1, server.TransfersRefused);
    }

    [Fact]
    public async Task SendAsync_UnknownIdWithLargePayload_RefusedWithReasonWhileSending()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferPayload big = Payload(16, 4, 64, 1024, seed: 17);

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "nobody-asked", big));

        Assert.Equal(KvTransferError.Refused, e.Error);
        Assert.Contains("unknown transfer id 'nobody-asked'", e.Message);
        Assert.Equal(1, server.TransfersRefused);
    }

    [Fact]
    public async Task SendAsync_TicketDisposedBeforeSend_RefusedAndTicketCancelled()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferTicket ticket = server.Expect("gone");
        ticket.Dispose();

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "gone", Payload(1, 1, 4, 3, seed: 4)));

        Assert.Equal(KvTransferError.Refused, e.Error);
        Assert.Contains("'gone'", e.Message);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ticket.Received);
        Assert.Equal(0, server.PendingTransfers);
    }

    [Fact]
    public async Task SendAsync_IdAlreadyReceived_SecondSenderRefused()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        using KvTransferTicket ticket = server.Expect("once");
        await _client.SendAsync(server.Address, "once", Payload(1, 2, 8, 5, seed: 5));
        await ticket.Received;

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "once", Payload(1, 2, 8, 5, seed: 5)));

        Assert.Equal(KvTransferError.Refused, e.Error);
        Assert.Equal(1, server.TransfersReceived);
    }

    [Fact]
    public async Task Receive_SenderClosesMidData_TicketFaultsNamingPeer_ServerServesNext()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferPayload payload = Payload(2, 2, 16, 100, seed: 6);
        using KvTransferTicket broken = server.Expect("broken");
        string peer;
        using (Socket raw = await ConnectRawAsync(server))
        {
            peer = raw.LocalEndPoint!.ToString()!;
            await raw.SendAsync(KvTransferWire.EncodeHeader("broken", payload.Layout.ToJson(), payload.Data.Length));
            await raw.SendAsync(payload.Data[..1000]);
        }

        var e = await Assert.ThrowsAsync<KvTransferException>(() => broken.Received);
        Assert.Equal(KvTransferError.Broken, e.Error);
        Assert.Contains(peer, e.Message);
        Assert.Contains("'broken'", e.Message);
        Assert.Contains("closed the connection", e.Message);
        Assert.Contains($"of {payload.Data.Length} bytes", e.Message);
        Assert.Equal(1, server.TransfersFailed);

        using KvTransferTicket next = server.Expect("next");
        await _client.SendAsync(server.Address, "next", payload);
        Assert.True(SameData(payload, await next.Received));
    }

    [Fact]
    public async Task SendAsync_ThirtyTwoConcurrentTransfers_AllArriveIntact()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferPayload[] payloads = [.. Enumerable.Range(0, 32).Select(i => Payload(2, 2, 16, 50 + (i * 7), seed: 100 + i))];
        KvTransferTicket[] tickets = [.. Enumerable.Range(0, 32).Select(i => server.Expect($"t{i}"))];

        await Task.WhenAll(Enumerable.Range(0, 32).Select(i => _client.SendAsync(server.Address, $"t{i}", payloads[i])));
        KvTransferPayload[] received = await Task.WhenAll(tickets.Select(t => t.Received));

        for (int i = 0; i < 32; i++)
        {
            Assert.Equal(payloads[i].Layout, received[i].Layout);
            Assert.True(payloads[i].Data.Span.SequenceEqual(received[i].Data.Span), $"transfer {i} differs");
        }

        Assert.Equal(32, server.TransfersReceived);
        Assert.Equal(payloads.Sum(p => (long)p.Data.Length), server.BytesReceived);
    }

    [Fact]
    public async Task Receive_GarbageAndStalledConnections_DroppedWithoutAffectingOthers()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        using Socket stalled = await ConnectRawAsync(server);
        await stalled.SendAsync("DKV"u8.ToArray());
        using Socket garbage = await ConnectRawAsync(server);
        await garbage.SendAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));

        Assert.Null(await ReadReplyAsync(garbage));

        using KvTransferTicket ticket = server.Expect("fine");
        KvTransferPayload payload = Payload(2, 2, 16, 64, seed: 7);
        await _client.SendAsync(server.Address, "fine", payload);
        Assert.True(SameData(payload, await ticket.Received));
        Assert.Equal(1, server.TransfersRefused);
        Assert.Equal(0, server.TransfersFailed);
    }

    [Fact]
    public async Task Receive_UnsupportedVersion_RefusedWithReason()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        using Socket raw = await ConnectRawAsync(server);
        byte[] header = KvTransferWire.EncodeHeader("v", Payload(1, 1, 1, 1, seed: 8).Layout.ToJson(), 8);
        header[4] = 9;
        await raw.SendAsync(header);

        (byte status, string message) = (await ReadReplyAsync(raw))!.Value;

        Assert.Equal((byte)2, status);
        Assert.Contains("unsupported protocol version 9", message);
        Assert.Equal(1, server.TransfersRefused);
    }

    [Fact]
    public async Task Receive_LayoutDisagreesWithDataLength_RefusedAndTicketStillWaits()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        using KvTransferTicket ticket = server.Expect("mismatch");
        KvTransferPayload payload = Payload(2, 2, 16, 10, seed: 9);
        using (Socket raw = await ConnectRawAsync(server))
        {
            await raw.SendAsync(KvTransferWire.EncodeHeader("mismatch", payload.Layout.ToJson(), payload.Data.Length - 4));

            (byte status, string message) = (await ReadReplyAsync(raw))!.Value;

            Assert.Equal((byte)2, status);
            Assert.Contains($"the layout describes {payload.Data.Length} bytes but the header announces {payload.Data.Length - 4}", message);
        }

        Assert.False(ticket.Received.IsCompleted);
        await _client.SendAsync(server.Address, "mismatch", payload);
        Assert.True(SameData(payload, await ticket.Received));
    }

    [Fact]
    public async Task Receive_MalformedLayout_RefusedWithReason()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        using KvTransferTicket ticket = server.Expect("bad-json");
        using Socket raw = await ConnectRawAsync(server);
        await raw.SendAsync(KvTransferWire.EncodeHeader("bad-json", "{\"layers\":2}", 0));

        (byte status, string message) = (await ReadReplyAsync(raw))!.Value;

        Assert.Equal((byte)2, status);
        Assert.Contains("malformed transfer id or layout", message);
        Assert.False(ticket.Received.IsCompleted);
    }

    [Fact]
    public async Task SendAsync_WhileAnotherSenderHoldsTheId_Refused_FirstStillCompletes()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        using KvTransferTicket ticket = server.Expect("shared");
        KvTransferPayload payload = Payload(2, 2, 16, 40, seed: 10);
        using Socket first = await ConnectRawAsync(server);
        await first.SendAsync(KvTransferWire.EncodeHeader("shared", payload.Layout.ToJson(), payload.Data.Length));
        await EngineContractTests.WaitUntilAsync(() => server.TransfersInProgress == 1);

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "shared", payload));
        Assert.Equal(KvTransferError.Refused, e.Error);
        Assert.Contains($"already being sent by {first.LocalEndPoint}", e.Message);

        await KvTransferWire.SendAllAsync(first, payload.Data, CancellationToken.None);
        Assert.Equal((byte)1, (await ReadReplyAsync(first))!.Value.Status);
        Assert.True(SameData(payload, await ticket.Received));
    }

    [Fact]
    public async Task Dispose_TicketWhileReceiving_SenderToldWhy()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferTicket ticket = server.Expect("cut");
        KvTransferPayload payload = Payload(2, 2, 16, 40, seed: 11);
        using Socket raw = await ConnectRawAsync(server);
        await raw.SendAsync(KvTransferWire.EncodeHeader("cut", payload.Layout.ToJson(), payload.Data.Length));
        await raw.SendAsync(payload.Data[..100]);
        await EngineContractTests.WaitUntilAsync(() => server.TransfersInProgress == 1);

        ticket.Dispose();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ticket.Received);
        (byte status, string message) = (await ReadReplyAsync(raw))!.Value;
        Assert.Equal((byte)2, status);
        Assert.Contains("transfer 'cut' given up after", message);
        Assert.Contains("cancelled or expired on the receiver", message);
        raw.Shutdown(SocketShutdown.Send);
        await EngineContractTests.WaitUntilAsync(() => server.TransfersFailed == 1 && server.TransfersInProgress == 0);
    }

    [Fact]
    public async Task SendAsync_AlreadyCancelled_ThrowsOperationCanceled_TicketStillWaits()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        using KvTransferTicket ticket = server.Expect("cancel-me");
        using var cancel = new CancellationTokenSource();
        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _client.SendAsync(server.Address, "cancel-me", Payload(1, 1, 4, 4, seed: 12), cancel.Token));

        Assert.False(ticket.Received.IsCompleted);
    }

    [Fact]
    public async Task SendAsync_CancelledWhileWaitingForTheReceiver_ThrowsOperationCanceled()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        using var cancel = new CancellationTokenSource();
        Task<KvTransferSendResult> send = _client.SendAsync($"tcp://127.0.0.1:{((IPEndPoint)listener.LocalEndPoint!).Port}", "silent", Payload(1, 1, 4, 4, seed: 13), cancel.Token);
        using Socket accepted = await listener.AcceptAsync();
        byte[] header = new byte[KvTransferWire.HeaderSize];
        Assert.Equal(header.Length, await KvTransferWire.ReceiveExactlyAsync(accepted, header, CancellationToken.None));

        await cancel.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send);
        await ReadUntilClosedAsync(accepted);
    }

    /// <summary>Reads (and drops) what the peer sends until it closes the connection.</summary>
    internal static async Task ReadUntilClosedAsync(Socket socket)
    {
        var buffer = new byte[4096];
        while (await socket.ReceiveAsync(buffer.AsMemory()) > 0)
        {
        }
    }

    [Fact]
    public async Task SendAsync_NoServer_Unreachable()
    {
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync($"tcp://127.0.0.1:{port}", "x", Payload(1, 1, 4, 4, seed: 14)));

        Assert.Equal(KvTransferError.Unreachable, e.Error);
        Assert.Contains($"tcp://127.0.0.1:{port}", e.Message);
    }

    [Fact]
    public async Task SendAsync_DataLengthNotLayoutByteCount_ArgumentException()
    {
        KvTransferPayload good = Payload(1, 1, 4, 4, seed: 15);

        var e = await Assert.ThrowsAsync<ArgumentException>(() => _client.SendAsync("tcp://127.0.0.1:1", "x", good with { Data = good.Data[..^4] }));

        Assert.Contains("layout describes", e.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => _client.SendAsync("http://127.0.0.1:1", "x", good));
        await Assert.ThrowsAsync<ArgumentException>(() => _client.SendAsync("tcp://127.0.0.1:1", "", good));
    }

    [Fact]
    public async Task Expect_SameIdTwice_Throws_AfterItEndsAllowedAgain()
    {
        await using KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferTicket first = server.Expect("dup");

        Assert.Throws<InvalidOperationException>(() => server.Expect("dup"));
        first.Dispose();
        using KvTransferTicket second = server.Expect("dup");

        KvTransferPayload payload = Payload(1, 1, 4, 4, seed: 16);
        await _client.SendAsync(server.Address, "dup", payload);
        Assert.True(SameData(payload, await second.Received));
    }

    [Fact]
    public async Task DisposeAsync_PendingTicket_FaultsWithObjectDisposed()
    {
        KvTransferServer server = KvTransferServer.Start(Loopback);
        KvTransferTicket ticket = server.Expect("late");

        await server.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => ticket.Received);
        Assert.Throws<ObjectDisposedException>(() => server.Expect("later"));
    }

    [Fact]
    public async Task Address_AdvertisedHostAndDefaults_LoopbackTowardAdvertisesTheNetworkAddress()
    {
        await using KvTransferServer given = KvTransferServer.Start(Loopback with { AdvertisedHost = "decode-7.example" });
        await using KvTransferServer local = KvTransferServer.Start(KvTransferServerOptions.Default with { AdvertiseToward = "nats://10.9.9.9:4222" });
        await using KvTransferServer any = KvTransferServer.Start(KvTransferServerOptions.Default with { BindAddress = "0.0.0.0" });
        await using KvTransferServer toward = KvTransferServer.Start(KvTransferServerOptions.Default with { BindAddress = "0.0.0.0", AdvertiseToward = "nats://127.0.0.1:4222,nats://10.9.9.9:4222" });

        Assert.Equal($"tcp://decode-7.example:{given.LocalEndPoint.Port}", given.Address);
        Assert.Equal(IPAddress.Loopback, local.LocalEndPoint.Address);
        Assert.Equal($"tcp://127.0.0.1:{local.LocalEndPoint.Port}", local.Address);
        Assert.Equal(IPAddress.Any, any.LocalEndPoint.Address);
        Assert.Equal($"tcp://127.0.0.1:{any.LocalEndPoint.Port}", any.Address);
        // Toward a server on this very host (the guides' head node), every interface listens: the host's network
        // address is advertised, which other hosts can reach, not loopback.
        string advertised = toward.Address["tcp://".Length..toward.Address.LastIndexOf(':')];
        Assert.False(IPAddress.IsLoopback(IPAddress.Parse(advertised)), toward.Address);
        Assert.Contains(IPAddress.Parse(advertised), System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
            .SelectMany(n => n.GetIPProperties().UnicastAddresses).Select(a => a.Address));
        Assert.Equal(IPAddress.Loopback, KvTransferServer.LocalAddressToward("127.0.0.1", 9));
    }

    [Fact]
    public void Start_BadOptions_ArgumentExceptionNamingTheSetting()
    {
        Assert.Contains("bind address", Assert.Throws<ArgumentException>(() => KvTransferServer.Start(Loopback with { BindAddress = "localhost" })).Message);
        Assert.Contains("idle timeout", Assert.Throws<ArgumentException>(() => KvTransferServer.Start(Loopback with { IdleTimeout = TimeSpan.Zero })).Message);
        Assert.Contains("connect timeout", Assert.Throws<ArgumentException>(() => new KvTransferClient(KvTransferClientOptions.Default with { ConnectTimeout = TimeSpan.Zero })).Message);
    }
}

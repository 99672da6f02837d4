using Dynamo.Components.KvTransfer;
using Dynamo.Llm.Kv;
using Dynamo.Tests.Llm.Kv;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Components.KvTransfer;

/// <summary>
/// A transfer in parts (a tensor-parallel prefill worker's ranks, each pushing its own KV heads) over real sockets on
/// loopback: the ticket collects them in any order and completes with the whole model's layout; a part that does not fit
/// is refused and the ticket keeps waiting; a missing part fails it at its expiry.
/// </summary>
public sealed class KvTransferTicketTests
{
    private readonly KvTransferClient _client = new();

    private static KvTransferPayload Whole(int seed) => KvTransferServerTests.Payload(layers: 3, kvHeads: 4, headDim: 16, tokens: 37, seed: seed);

    [Theory]
    [InlineData(2, false, false)]
    [InlineData(2, true, false)]
    [InlineData(4, true, true)]
    [InlineData(4, false, true)]
    public async Task Parts_AnyOrder_TicketCompletesWithTheWholeByteIdentical(int parts, bool reversed, bool pooled)
    {
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback with { PoolBuffers = pooled });
        KvTransferPayload whole = Whole(seed: parts);
        KvTransferPayload[] split = KvTransferPartsTests.Split(whole, parts);
        if (reversed)
        {
            Array.Reverse(split);
        }

        using KvTransferTicket ticket = server.Expect("tp");
        for (int i = 0; i < parts - 1; i++)
        {
            // Each part is acknowledged on its own; the ticket waits for the rest.
            await _client.SendAsync(server.Address, "tp", split[i]);
            Assert.False(ticket.Received.IsCompleted);
            Assert.Equal(0, ticket.PartsReceived);
        }

        await _client.SendAsync(server.Address, "tp", split[^1]);
        KvTransferPayload received = await ticket.Received;

        Assert.True(KvTransferServerTests.SameData(whole, received));
        Assert.Equal(parts, ticket.PartsReceived);
        Assert.Equal(parts, server.TransfersReceived);
        Assert.Equal(whole.Data.Length, server.BytesReceived);
        Assert.Equal(0, server.PendingTransfers);
    }

    [Fact]
    public async Task Parts_Concurrent_TicketCompletesWithTheWhole()
    {
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback);
        KvTransferPayload whole = Whole(seed: 5);
        using KvTransferTicket ticket = server.Expect("together");

        await Task.WhenAll(KvTransferPartsTests.Split(whole, 4).Select(p => _client.SendAsync(server.Address, "together", p)));

        Assert.True(KvTransferServerTests.SameData(whole, await ticket.Received));
        Assert.Equal(4, ticket.PartsReceived);
    }

    [Fact]
    public async Task DuplicatePart_Refused_TicketStillCompletesWithTheOthers()
    {
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback);
        KvTransferPayload whole = Whole(seed: 6);
        KvTransferPayload[] split = KvTransferPartsTests.Split(whole, 2);
        using KvTransferTicket ticket = server.Expect("dup");
        await _client.SendAsync(server.Address, "dup", split[0]);

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "dup", split[0]));

        Assert.Equal(KvTransferError.Refused, e.Error);
        Assert.Contains("this part's KV heads 0..1 overlap the KV heads 0..1 already sent by 127.0.0.1:", e.Message);
        Assert.False(ticket.Received.IsCompleted);
        await _client.SendAsync(server.Address, "dup", split[1]);
        Assert.True(KvTransferServerTests.SameData(whole, await ticket.Received));
        Assert.Equal(1, server.TransfersRefused);
    }

    [Fact]
    public async Task OverlappingPart_Refused()
    {
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback);
        KvTransferPayload[] quarters = KvTransferPartsTests.Split(Whole(seed: 7), 4);
        KvTransferPayload[] halves = KvTransferPartsTests.Split(Whole(seed: 7), 2);
        using KvTransferTicket ticket = server.Expect("overlap");
        await _client.SendAsync(server.Address, "overlap", quarters[1]);

        // Heads 0..1 as one of 2 parts: another whole's part count, refused before its heads are looked at.
        var other = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "overlap", halves[0]));
        Assert.Contains("is not of the same whole as the part", other.Message);

        // Heads 1..2 as one of 4 parts (a sender that split the heads otherwise): overlaps head 1.
        KvTransferLayout odd = quarters[1].Layout with { KvHeads = 2 };
        var overlap = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "overlap", new KvTransferPayload(odd, new byte[odd.ByteCount])));
        Assert.Contains("this part's KV heads 1..2 overlap the KV head 1 already sent by", overlap.Message);
        Assert.False(ticket.Received.IsCompleted);
    }

    [Fact]
    public async Task PartOfAnotherShape_OrWholeAfterAPart_OrHeadsOutOfRange_Refused()
    {
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback);
        KvTransferPayload whole = Whole(seed: 8);
        KvTransferPayload[] split = KvTransferPartsTests.Split(whole, 2);
        using KvTransferTicket ticket = server.Expect("shape");
        await _client.SendAsync(server.Address, "shape", split[0]);

        KvTransferLayout fewerTokens = split[1].Layout with { TokenCount = 36 };
        var tokens = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "shape", new KvTransferPayload(fewerTokens, new byte[fewerTokens.ByteCount])));
        Assert.Contains("is not of the same whole", tokens.Message);
        var again = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "shape", whole));
        Assert.Contains("is already being sent by", again.Message);
        KvTransferLayout outside = split[1].Layout with { KvHeadStart = 3 };
        var range = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "shape", new KvTransferPayload(outside, new byte[outside.ByteCount])));
        Assert.Contains("KV heads 3..4 are not within the model's 4", range.Message);

        Assert.Equal(3, server.TransfersRefused);
        await _client.SendAsync(server.Address, "shape", split[1]);
        Assert.True(KvTransferServerTests.SameData(whole, await ticket.Received));
    }

    [Fact]
    public async Task PartWithTheWholesByteCount_RefusedBeforeItsData_TicketStillCompletes()
    {
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback);
        KvTransferPayload whole = Whole(seed: 10);
        KvTransferPayload[] split = KvTransferPartsTests.Split(whole, 2);
        using KvTransferTicket ticket = server.Expect("sizes");
        using (System.Net.Sockets.Socket raw = await KvTransferServerTests.ConnectRawAsync(server))
        {
            // A part's layout (2 of 4 heads) announcing the whole's bytes: a sender that split the heads but not the data.
            await raw.SendAsync(KvTransferWire.EncodeHeader("sizes", split[0].Layout.ToJson(), whole.Data.Length));

            (byte status, string message) = (await KvTransferServerTests.ReadReplyAsync(raw))!.Value;

            Assert.Equal((byte)KvTransferReplyStatus.Refused, status);
            Assert.Contains($"the layout describes {split[0].Data.Length} bytes but the header announces {whole.Data.Length}", message);
        }

        Assert.False(ticket.Received.IsCompleted);
        await Task.WhenAll(split.Select(p => _client.SendAsync(server.Address, "sizes", p)));
        Assert.True(KvTransferServerTests.SameData(whole, await ticket.Received));
    }

    [Fact]
    public async Task PartWhoseWholeIsOverTheLimit_Refused()
    {
        KvTransferPayload whole = Whole(seed: 12);
        KvTransferPayload[] split = KvTransferPartsTests.Split(whole, 2);
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback with { MaxPayloadBytes = whole.Data.Length - 1 });
        using KvTransferTicket ticket = server.Expect("big");

        var e = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "big", split[0]));

        Assert.Equal(KvTransferError.Refused, e.Error);
        Assert.Contains($"the whole of this part is {whole.Data.Length} bytes, over this receiver's limit of {whole.Data.Length - 1}", e.Message);
    }

    [Fact]
    public async Task PartConnectionBreaksMidData_TicketFailsNamingThePeer()
    {
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback);
        KvTransferPayload[] split = KvTransferPartsTests.Split(Whole(seed: 11), 2);
        using KvTransferTicket ticket = server.Expect("broken");
        await _client.SendAsync(server.Address, "broken", split[0]);
        using (System.Net.Sockets.Socket raw = await KvTransferServerTests.ConnectRawAsync(server))
        {
            await raw.SendAsync(KvTransferWire.EncodeHeader("broken", split[1].Layout.ToJson(), split[1].Data.Length));
            await raw.SendAsync(split[1].Data[..100]);
        }

        var e = await Assert.ThrowsAsync<KvTransferException>(() => ticket.Received);
        Assert.Equal(KvTransferError.Broken, e.Error);
        Assert.Contains($"the sender closed the connection after 100 of {split[1].Data.Length} bytes", e.Message);
        Assert.Equal(1, server.TransfersFailed);
    }

    [Fact]
    public async Task MissingPart_TicketTimesOutNamingTheMissingHeads_LatePartRefused()
    {
        var clock = new ManualTimeProvider();
        await using KvTransferServer server = KvTransferServer.Start(KvTransferServerTests.Loopback with { TimeProvider = clock });
        KvTransferPayload[] split = KvTransferPartsTests.Split(Whole(seed: 9), 2);
        using KvTransferTicket ticket = server.Expect("half", TimeSpan.FromSeconds(30));
        await _client.SendAsync(server.Address, "half", split[1]);

        clock.Advance(TimeSpan.FromSeconds(30));

        var e = await Assert.ThrowsAsync<KvTransferException>(() => ticket.Received);
        Assert.Equal(KvTransferError.TimedOut, e.Error);
        Assert.Contains("'half' was not received in time (1 of 2 parts in; KV heads 0, 1 of 4 missing (KV heads 2..3 claimed by 127.0.0.1:", e.Message);
        var late = await Assert.ThrowsAsync<KvTransferException>(() => _client.SendAsync(server.Address, "half", split[0]));
        Assert.Equal(KvTransferError.Refused, late.Error);
        Assert.Equal(0, ticket.PartsReceived);
    }
}

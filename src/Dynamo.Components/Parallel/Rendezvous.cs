using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Llm.Parallel;

namespace Dynamo.Components.Parallel;

/// <summary>
/// The rendezvous at <c>--dist-init-addr</c> (Parallel/README.md, "Rendezvous"): rank 0 listens, the others connect
/// (retrying while rank 0 is not up, up to the start timeout) and say hello; rank 0 checks every hello against its own
/// (size, nodes, agreement, a rank not taken) and answers all with the peer table once all have joined, or refuses:
/// a disagreement is the same one-line <see cref="CollectiveException"/> on both sides, never a hang.
/// </summary>
internal static class Rendezvous
{
    /// <summary>The version of the hello and the reply.</summary>
    public const int Version = 1;

    private const uint FrameMagic = 0x56524344; // "DCRV"
    private const int MaxFrameBytes = 1 << 20;
    private static readonly TimeSpan s_helloTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_retryDelay = TimeSpan.FromMilliseconds(200);

    /// <summary>The outcome: the group's session and every rank's data endpoint and host id (index = rank).</summary>
    public sealed record Result(ulong Session, RendezvousPeer[] Peers);

    /// <summary>Rank 0's side: listens on the init address until every rank has joined; <see cref="CollectiveException"/> on a refusal or the timeout.</summary>
    public static async Task<Result> HostAsync(CollectiveMember me, string hostId, int dataPort, CollectiveGroupOptions options, CancellationToken cancellationToken)
    {
        InitEndpoint init = InitEndpoint.Parse(me.InitAddress);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.StartTimeout);
        using Socket listener = await ListenAsync(init, deadline.Token).ConfigureAwait(false);
        var hellos = Channel.CreateUnbounded<(Socket Socket, RendezvousHello? Hello)>();
        Task accepting = AcceptAsync(listener, hellos.Writer, deadline.Token);
        var joined = new Dictionary<int, (Socket Socket, RendezvousHello Hello)>();
        try
        {
            while (joined.Count < me.Size - 1)
            {
                (Socket Socket, RendezvousHello? Hello) item;
                try
                {
                    item = await hellos.Reader.ReadAsync(deadline.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    int[] missing = [.. Enumerable.Range(1, me.Size - 1).Where(r => !joined.ContainsKey(r))];
                    string problem = Invariant($"rank 0: rank{(missing.Length > 1 ? "s" : "")} {string.Join(", ", missing)} of {me.Size} did not join at {init} within {options.StartTimeout.TotalSeconds:0.#} s");
                    await RefuseAllAsync(joined.Values.Select(j => j.Socket), problem).ConfigureAwait(false);
                    throw new CollectiveException(problem, missing[0]);
                }

                if (item.Hello is not { } hello)
                {
                    item.Socket.Dispose();
                    continue;
                }

                string? refusal = Check(me, hello, joined, item.Socket);
                if (refusal is not null)
                {
                    await RefuseAllAsync(joined.Values.Select(j => j.Socket).Append(item.Socket), refusal).ConfigureAwait(false);
                    item.Socket.Dispose();
                    throw new CollectiveException(refusal, hello.Rank);
                }

                joined[hello.Rank] = (item.Socket, hello);
            }

            ulong session = (ulong)Random.Shared.NextInt64() ^ ((ulong)Environment.ProcessId << 40);
            foreach ((int rank, (Socket socket, _)) in joined)
            {
                var peers = new RendezvousPeer[me.Size];
                peers[0] = new RendezvousPeer { Rank = 0, Host = Address(socket.LocalEndPoint), Port = dataPort, HostId = hostId };
                foreach ((int r, (Socket s, RendezvousHello h)) in joined)
                {
                    peers[r] = new RendezvousPeer { Rank = r, Host = Address(s.RemoteEndPoint), Port = h.DataPort, HostId = h.HostId };
                }

                try
                {
                    await WriteAsync(socket, JsonSerializer.SerializeToUtf8Bytes(new RendezvousReply { Ok = true, Session = session, Peers = peers }, CollectivesJsonContext.Default.RendezvousReply), deadline.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is SocketException or IOException)
                {
                    string problem = Invariant($"rank 0: rank {rank} left the rendezvous before every rank joined ({e.Message})");
                    await RefuseAllAsync(joined.Values.Select(j => j.Socket), problem).ConfigureAwait(false);
                    throw new CollectiveException(problem, rank);
                }
            }

            var table = new RendezvousPeer[me.Size];
            table[0] = new RendezvousPeer { Rank = 0, Host = "", Port = dataPort, HostId = hostId };
            foreach ((int r, (Socket s, RendezvousHello h)) in joined)
            {
                table[r] = new RendezvousPeer { Rank = r, Host = Address(s.RemoteEndPoint), Port = h.DataPort, HostId = h.HostId };
            }

            return new Result(session, table);
        }
        finally
        {
            await deadline.CancelAsync().ConfigureAwait(false);
            listener.Dispose();
            try
            {
                await accepting.ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // The accept loop ends with the listener.
            }

            while (hellos.Reader.TryRead(out var late))
            {
                late.Socket.Dispose();
            }

            foreach ((Socket socket, _) in joined.Values)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>A rank other than 0: joins rank 0's rendezvous; <see cref="CollectiveException"/> naming rank 0 on a refusal or the timeout.</summary>
    public static async Task<Result> JoinAsync(CollectiveMember me, string hostId, int dataPort, CollectiveGroupOptions options, CancellationToken cancellationToken)
    {
        InitEndpoint init = InitEndpoint.Parse(me.InitAddress);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.StartTimeout);
        string seconds = options.StartTimeout.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture);
        Socket? socket = null;
        try
        {
            while (socket is null)
            {
                var attempt = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await attempt.ConnectAsync(init.Host, init.Port, deadline.Token).ConfigureAwait(false);
                    socket = attempt;
                }
                catch (Exception e) when (e is SocketException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    attempt.Dispose();
                    if (deadline.IsCancellationRequested)
                    {
                        throw new CollectiveException(Invariant($"rank {me.Rank}: no rank 0 at {init} after {seconds} s"), 0);
                    }

                    try
                    {
                        await Task.Delay(s_retryDelay, deadline.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        throw new CollectiveException(Invariant($"rank {me.Rank}: no rank 0 at {init} after {seconds} s"), 0);
                    }
                }
            }

            var hello = new RendezvousHello
            {
                Rank = me.Rank,
                Size = me.Size,
                NodeCount = me.NodeCount,
                NodeRank = me.NodeRank,
                HostId = hostId,
                DataPort = dataPort,
                Agreement = me.Agreement.Fingerprint.ToArray(),
                AgreementText = me.Agreement.Description,
            };
            RendezvousReply? reply;
            try
            {
                await WriteAsync(socket, JsonSerializer.SerializeToUtf8Bytes(hello, CollectivesJsonContext.Default.RendezvousHello), deadline.Token).ConfigureAwait(false);
                byte[]? frame = await ReadAsync(socket, deadline.Token).ConfigureAwait(false);
                reply = frame is null ? null : JsonSerializer.Deserialize(frame, CollectivesJsonContext.Default.RendezvousReply);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new CollectiveException(Invariant($"rank {me.Rank}: rank 0 at {init} did not answer within {seconds} s (it waits for every rank to join)"), 0);
            }
            catch (Exception e) when (e is SocketException or IOException or JsonException)
            {
                throw new CollectiveException(Invariant($"rank {me.Rank}: the rendezvous with rank 0 at {init} broke ({e.Message})"), 0, e);
            }

            if (reply is null)
            {
                throw new CollectiveException(Invariant($"rank {me.Rank}: rank 0 at {init} closed the rendezvous without an answer"), 0);
            }

            if (!reply.Ok)
            {
                throw new CollectiveException(reply.Error ?? Invariant($"rank {me.Rank}: refused by rank 0"), 0);
            }

            if (reply.Peers.Length != me.Size || reply.Peers.Where((p, r) => p is null || p.Rank != r).Any())
            {
                throw new CollectiveException(Invariant($"rank {me.Rank}: rank 0 answered a peer table of {reply.Peers.Length} ranks for a group of {me.Size}"), 0);
            }

            return new Result(reply.Session, reply.Peers);
        }
        finally
        {
            socket?.Dispose();
        }
    }

    /// <summary>The one-line refusal of <paramref name="hello"/>, or null when it agrees with rank 0 and its rank is free.</summary>
    internal static string? Check(CollectiveMember me, RendezvousHello hello, IReadOnlyDictionary<int, (Socket Socket, RendezvousHello Hello)> joined, Socket from)
    {
        if (hello.Version != Version)
        {
            return Invariant($"rank {hello.Rank} speaks rendezvous version {hello.Version}, rank 0 version {Version}: run the same dynamo on every rank");
        }

        if (hello.Size != me.Size)
        {
            return Invariant($"rank {hello.Rank} disagrees with rank 0: tensor-parallel size {hello.Size} vs {me.Size}");
        }

        if (hello.Rank < 1 || hello.Rank >= me.Size)
        {
            return Invariant($"rank 0: a process at {from.RemoteEndPoint} says it is rank {hello.Rank}, not a rank of 1 .. {me.Size - 1}");
        }

        if (hello.NodeCount != me.NodeCount)
        {
            return Invariant($"rank {hello.Rank} disagrees with rank 0: nnodes {hello.NodeCount} vs {me.NodeCount}");
        }

        if (!hello.Agreement.AsSpan().SequenceEqual(me.Agreement.Fingerprint.Span))
        {
            return Invariant($"rank {hello.Rank} disagrees with rank 0: {hello.AgreementText} vs {me.Agreement.Description}");
        }

        if (joined.TryGetValue(hello.Rank, out var first))
        {
            return Invariant($"rank 0: two processes claim rank {hello.Rank} (from {first.Socket.RemoteEndPoint} and {from.RemoteEndPoint})");
        }

        return null;
    }

    /// <summary>Writes one frame: magic, length, payload.</summary>
    internal static async Task WriteAsync(Socket socket, byte[] payload, CancellationToken cancellationToken)
    {
        byte[] frame = new byte[8 + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, FrameMagic);
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(4), payload.Length);
        payload.CopyTo(frame, 8);
        int sent = 0;
        while (sent < frame.Length)
        {
            sent += await socket.SendAsync(frame.AsMemory(sent), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Reads one frame's payload; null when the connection closes first; <see cref="IOException"/> when it is not a rendezvous frame.</summary>
    internal static async Task<byte[]?> ReadAsync(Socket socket, CancellationToken cancellationToken)
    {
        byte[] head = new byte[8];
        if (!await ReceiveAsync(socket, head, cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        int length = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(4));
        if (BinaryPrimitives.ReadUInt32LittleEndian(head) != FrameMagic || length is < 0 or > MaxFrameBytes)
        {
            throw new IOException("not a dynamo collectives rendezvous frame");
        }

        byte[] payload = new byte[length];
        return await ReceiveAsync(socket, payload, cancellationToken).ConfigureAwait(false) ? payload : null;
    }

    /// <summary>Fills <paramref name="buffer"/>; false when the connection closes first.</summary>
    internal static async Task<bool> ReceiveAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            int n = await socket.ReceiveAsync(buffer[received..], SocketFlags.None, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                return false;
            }

            received += n;
        }

        return true;
    }

    /// <summary>An address as a peer can dial it (IPv4-mapped IPv6 addresses as IPv4).</summary>
    internal static string Address(EndPoint? endPoint)
    {
        IPAddress address = ((IPEndPoint)endPoint!).Address;
        return (address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).ToString();
    }

    private static async Task<Socket> ListenAsync(InitEndpoint init, CancellationToken cancellationToken)
    {
        IPAddress[] addresses = await init.ResolveAsync(cancellationToken).ConfigureAwait(false);
        if (addresses.Length == 0)
        {
            throw new CollectiveException(Invariant($"rank 0: {init.Host} (--dist-init-addr) resolves to no address"));
        }

        var listener = new Socket(addresses[0].AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(new IPEndPoint(addresses[0], init.Port));
            listener.Listen(128);
            return listener;
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new CollectiveException(Invariant($"rank 0: cannot listen on {init} (--dist-init-addr): {e.Message}"), 0, e);
        }
    }

    /// <summary>Accepts until cancelled; each connection's hello (or null when it sends none that parses in time) goes to <paramref name="hellos"/>.</summary>
    private static async Task AcceptAsync(Socket listener, ChannelWriter<(Socket, RendezvousHello?)> hellos, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket socket = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            socket.NoDelay = true;
            _ = ReadHelloAsync(socket);
        }

        async Task ReadHelloAsync(Socket socket)
        {
            RendezvousHello? hello = null;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                timeout.CancelAfter(s_helloTimeout);
                byte[]? frame = await ReadAsync(socket, timeout.Token).ConfigureAwait(false);
                hello = frame is null ? null : JsonSerializer.Deserialize(frame, CollectivesJsonContext.Default.RendezvousHello);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or JsonException)
            {
                // Not a rank (or too slow to say so): dropped below.
            }

            if (!hellos.TryWrite((socket, hello)))
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>Sends every socket the refusal (best effort: a closed one is skipped).</summary>
    private static async Task RefuseAllAsync(IEnumerable<Socket> sockets, string error)
    {
        byte[] refusal = JsonSerializer.SerializeToUtf8Bytes(new RendezvousReply { Ok = false, Error = error }, CollectivesJsonContext.Default.RendezvousReply);
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        foreach (Socket socket in sockets)
        {
            try
            {
                await WriteAsync(socket, refusal, bound.Token).ConfigureAwait(false);
                socket.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // That rank is gone already.
            }
        }
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

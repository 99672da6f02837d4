using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Dynamo.Llm.Parallel;

namespace Dynamo.Components.Parallel;

/// <summary>
/// The collectives of a tensor-parallel group over TCP, in a star around rank 0: rank 0 listens at the init address,
/// every other rank connects to it once, says who it is and what it serves (<see cref="TcpCollectiveOptions"/>), and
/// that connection then carries every collective. An all-reduce sends each rank's values to rank 0, which sums them in
/// rank order and sends the sum back (so every rank holds the same bits); a gather sends to rank 0; a broadcast goes
/// out from rank 0. Blocking sockets with TCP_NODELAY: the calls come from a forward pass's one thread.
/// A peer whose connection closes or resets is lost at once; one silent past <see cref="TcpCollectiveOptions.RankTimeout"/>
/// is lost then. Rank 0 tells the others which rank was lost before it closes, so every rank names the same one.
/// </summary>
public sealed class TcpCollectiveGroup : ICollectiveGroup
{
    private const uint Magic = 0x31505444; // "DTP1"
    private const int OpAllReduce = 1, OpGather = 2, OpBroadcast = 3, OpAbort = 4;

    /// <summary>Rank 0: the connection of rank r at [r] ([0] unused); another rank: its connection to rank 0 at [0].</summary>
    private readonly Socket?[] _peers;
    private readonly TcpCollectiveOptions _options;
    private readonly byte[] _header = new byte[8];
    private float[][] _received;
    private byte[] _message = [];
    private CollectiveException? _broken;
    private bool _disposed;

    private TcpCollectiveGroup(TcpCollectiveOptions options, Socket?[] peers)
    {
        _options = options;
        _peers = peers;
        _received = new float[options.Size][];
    }

    public int Rank => _options.Rank;

    public int Size => _options.Size;

    /// <summary>
    /// Forms the group: rank 0 listens at <see cref="TcpCollectiveOptions.InitAddress"/> until every other rank has
    /// connected and agreed; the others connect (retrying until rank 0 is up, at most the timeout). A rank that
    /// disagrees (size, model, layout) or repeats a rank is refused with one line on both sides.
    /// </summary>
    /// <exception cref="CollectiveException">The group could not be formed; the message says why, in one line.</exception>
    public static async Task<TcpCollectiveGroup> JoinAsync(TcpCollectiveOptions options, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (options.Size == 1)
        {
            return new TcpCollectiveGroup(options, [null]);
        }

        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bound.CancelAfter(options.Timeout);
        try
        {
            return options.Rank == 0
                ? await LeadAsync(options, bound.Token).ConfigureAwait(false)
                : await ConnectAsync(options, bound.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            string waiting = options.Rank == 0 ? "not every rank connected" : $"no rank 0 answered at {options.InitAddress}";
            throw new CollectiveException(Invariant($"rank {options.Rank} of {options.Size}: {waiting} within {options.Timeout.TotalSeconds:0.#} s"));
        }
    }

    public void AllReduceSum(Span<float> values)
    {
        Check();
        if (Size == 1)
        {
            return;
        }

        Span<byte> bytes = MemoryMarshal.AsBytes(values);
        if (Rank != 0)
        {
            Send(0, OpAllReduce, bytes);
            Receive(0, OpAllReduce, bytes);
            return;
        }

        for (int r = 1; r < Size; r++)
        {
            float[] slot = Slot(r, values.Length);
            Receive(r, OpAllReduce, MemoryMarshal.AsBytes(slot.AsSpan(0, values.Length)));
        }

        // Rank order: ((v0 + v1) + v2) + ...; the others receive these bits.
        for (int r = 1; r < Size; r++)
        {
            Add(values, _received[r].AsSpan(0, values.Length));
        }

        for (int r = 1; r < Size; r++)
        {
            Send(r, OpAllReduce, bytes);
        }
    }

    public void Gather(ReadOnlySpan<float> local, Span<float> gathered, int root = 0)
    {
        Check();
        if (root != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(root), "this group gathers on rank 0 only");
        }

        if (Rank != 0)
        {
            Send(0, OpGather, MemoryMarshal.AsBytes(local));
            return;
        }

        if (gathered.Length != local.Length * Size)
        {
            throw new ArgumentException(Invariant($"gather: rank 0 needs {local.Length * Size} floats, got {gathered.Length}"), nameof(gathered));
        }

        local.CopyTo(gathered);
        for (int r = 1; r < Size; r++)
        {
            Receive(r, OpGather, MemoryMarshal.AsBytes(gathered.Slice(r * local.Length, local.Length)));
        }
    }

    public ReadOnlyMemory<byte> Broadcast(ReadOnlyMemory<byte> message, int root = 0)
    {
        Check();
        if (root != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(root), "this group broadcasts from rank 0 only");
        }

        if (Size == 1)
        {
            return message;
        }

        if (Rank == 0)
        {
            for (int r = 1; r < Size; r++)
            {
                Send(r, OpBroadcast, message.Span);
            }

            return message;
        }

        int length = ReceiveHeader(0, OpBroadcast);
        if (_message.Length < length)
        {
            _message = new byte[Math.Max(length, 2 * _message.Length)];
        }

        ReceiveExactly(0, _message.AsSpan(0, length));
        return _message.AsMemory(0, length);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (Socket? s in _peers)
        {
            s?.Dispose();
        }
    }

    private static async Task<TcpCollectiveGroup> LeadAsync(TcpCollectiveOptions options, CancellationToken cancellationToken)
    {
        (IPAddress address, int port) = await ResolveAsync(options.InitAddress, cancellationToken).ConfigureAwait(false);
        using var listener = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        try
        {
            listener.Bind(new IPEndPoint(address, port));
        }
        catch (SocketException e)
        {
            throw new CollectiveException(Invariant($"rank 0: cannot listen at {options.InitAddress} (--dist-init-addr): {e.Message}"));
        }

        listener.Listen(options.Size);
        var peers = new Socket?[options.Size];
        try
        {
            for (int joined = 1; joined < options.Size;)
            {
                Socket s = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
                (int rank, string refusal) = await HelloFromAsync(s, options, peers, cancellationToken).ConfigureAwait(false);
                await WriteStringAsync(s, refusal, cancellationToken).ConfigureAwait(false);
                if (refusal.Length > 0)
                {
                    s.Dispose();
                    throw new CollectiveException($"rank 0: {refusal}", rank >= 0 ? rank : null);
                }

                Tune(s, options);
                peers[rank] = s;
                joined++;
            }
        }
        catch
        {
            foreach (Socket? s in peers)
            {
                s?.Dispose();
            }

            throw;
        }

        return new TcpCollectiveGroup(options, peers);
    }

    /// <summary>Reads a rank's hello; returns its rank and "" when it agrees, else the one-line refusal both sides print.</summary>
    private static async Task<(int Rank, string Refusal)> HelloFromAsync(Socket s, TcpCollectiveOptions options, Socket?[] peers, CancellationToken cancellationToken)
    {
        byte[] head = new byte[12];
        await ReadExactlyAsync(s, head, cancellationToken).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32LittleEndian(head) != Magic)
        {
            return (-1, Invariant($"something that is not a rank of this worker connected to {options.InitAddress}"));
        }

        int rank = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(4)), size = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(8));
        string fingerprint = await ReadStringAsync(s, cancellationToken).ConfigureAwait(false);
        string layout = await ReadStringAsync(s, cancellationToken).ConfigureAwait(false);
        if (size != options.Size)
        {
            return (rank, Invariant($"rank {rank} was started with --tensor-parallel-size {size}, rank 0 with {options.Size}"));
        }

        if (rank < 1 || rank >= options.Size)
        {
            return (-1, Invariant($"a rank {rank} connected, outside 1..{options.Size - 1}"));
        }

        if (peers[rank] is not null)
        {
            return (rank, Invariant($"rank {rank} connected twice (two processes were given the same --node-rank?)"));
        }

        if (fingerprint != options.Fingerprint)
        {
            return (rank, Invariant($"rank {rank} disagrees with rank 0 on the model: fingerprint {fingerprint} vs {options.Fingerprint} (every rank must load the same model file)"));
        }

        if (layout != options.Layout)
        {
            return (rank, Invariant($"rank {rank} disagrees with rank 0 on the shard layout: '{layout}' vs '{options.Layout}'"));
        }

        return (rank, "");
    }

    private static async Task<TcpCollectiveGroup> ConnectAsync(TcpCollectiveOptions options, CancellationToken cancellationToken)
    {
        Socket s = await DialAsync(options, cancellationToken).ConfigureAwait(false);
        try
        {
            byte[] head = new byte[12];
            BinaryPrimitives.WriteUInt32LittleEndian(head, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(4), options.Rank);
            BinaryPrimitives.WriteInt32LittleEndian(head.AsSpan(8), options.Size);
            await s.SendAsync(head, cancellationToken).ConfigureAwait(false);
            await WriteStringAsync(s, options.Fingerprint, cancellationToken).ConfigureAwait(false);
            await WriteStringAsync(s, options.Layout, cancellationToken).ConfigureAwait(false);
            string refusal = await ReadStringAsync(s, cancellationToken).ConfigureAwait(false);
            if (refusal.Length > 0)
            {
                throw new CollectiveException(Invariant($"rank {options.Rank}: refused by rank 0: {refusal}"), 0);
            }
        }
        catch (Exception e) when (e is SocketException or EndOfStreamException)
        {
            s.Dispose();
            throw new CollectiveException(Invariant($"rank {options.Rank}: rank 0 at {options.InitAddress} closed the connection while ranks met ({e.Message})"), 0, e);
        }
        catch
        {
            s.Dispose();
            throw;
        }

        Tune(s, options);
        return new TcpCollectiveGroup(options, [s]);
    }

    /// <summary>Connects to rank 0, retrying every quarter second while nothing listens there yet.</summary>
    private static async Task<Socket> DialAsync(TcpCollectiveOptions options, CancellationToken cancellationToken)
    {
        while (true)
        {
            (IPAddress address, int port) = await ResolveAsync(options.InitAddress, cancellationToken).ConfigureAwait(false);
            var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await s.ConnectAsync(new IPEndPoint(address, port), cancellationToken).ConfigureAwait(false);
                return s;
            }
            catch (SocketException)
            {
                s.Dispose();
                await Task.Delay(250, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                s.Dispose();
                throw;
            }
        }
    }

    private static async Task<(IPAddress Address, int Port)> ResolveAsync(string initAddress, CancellationToken cancellationToken)
    {
        int colon = initAddress.LastIndexOf(':');
        string host = initAddress[..colon].Trim('[', ']');
        int port = int.Parse(initAddress.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture);
        if (IPAddress.TryParse(host, out IPAddress? ip))
        {
            return (ip, port);
        }

        try
        {
            IPAddress[] found = await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
            return (found.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? found[0], port);
        }
        catch (SocketException e)
        {
            throw new CollectiveException($"--dist-init-addr {initAddress}: cannot resolve '{host}': {e.Message}");
        }
    }

    private static void Tune(Socket s, TcpCollectiveOptions options)
    {
        s.NoDelay = true;
        s.ReceiveBufferSize = 4 << 20;
        s.SendBufferSize = 4 << 20;
        s.ReceiveTimeout = (int)options.RankTimeout.TotalMilliseconds;
        s.SendTimeout = (int)options.RankTimeout.TotalMilliseconds;
    }

    /// <summary>sum[i] += addend[i], element by element (the same bits as a scalar loop).</summary>
    private static void Add(Span<float> sum, ReadOnlySpan<float> addend)
    {
        int i = 0;
        for (int w = System.Numerics.Vector<float>.Count; i + w <= sum.Length; i += w)
        {
            (new System.Numerics.Vector<float>(sum[i..]) + new System.Numerics.Vector<float>(addend[i..])).CopyTo(sum[i..]);
        }

        for (; i < sum.Length; i++)
        {
            sum[i] += addend[i];
        }
    }

    private float[] Slot(int rank, int length) =>
        _received[rank] is { } s && s.Length >= length ? s : _received[rank] = new float[Math.Max(length, 1024)];

    private void Check()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_broken is not null)
        {
            throw new CollectiveException(_broken.Message, _broken.Rank, _broken);
        }
    }

    private void Send(int peer, int op, ReadOnlySpan<byte> payload)
    {
        BinaryPrimitives.WriteInt32LittleEndian(_header, op);
        BinaryPrimitives.WriteInt32LittleEndian(_header.AsSpan(4), payload.Length);
        try
        {
            Socket s = _peers[peer]!;
            SendAll(s, _header);
            SendAll(s, payload);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw Lost(peer, e);
        }
    }

    private static void SendAll(Socket s, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            data = data[s.Send(data)..];
        }
    }

    private void Receive(int peer, int op, Span<byte> payload)
    {
        int length = ReceiveHeader(peer, op);
        if (length != payload.Length)
        {
            throw Broke(new CollectiveException(Invariant($"rank {Rank}: rank {RankOf(peer)} sent {length} bytes for an operation of {payload.Length}: the ranks are out of step"), RankOf(peer)));
        }

        ReceiveExactly(peer, payload);
    }

    private int ReceiveHeader(int peer, int op)
    {
        ReceiveExactly(peer, _header);
        int got = BinaryPrimitives.ReadInt32LittleEndian(_header), length = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(4));
        if (got == OpAbort)
        {
            // Rank 0 lost a rank: the payload names it.
            Span<byte> lost = stackalloc byte[4];
            ReceiveExactly(peer, lost);
            int rank = BinaryPrimitives.ReadInt32LittleEndian(lost);
            throw Broke(new CollectiveException(Invariant($"rank {rank} of the tensor-parallel group was lost (rank 0 says so); rank {Rank} stops"), rank));
        }

        if (got != op)
        {
            throw Broke(new CollectiveException(Invariant($"rank {Rank}: rank {RankOf(peer)} sent operation {got} where {op} was due: the ranks are out of step"), RankOf(peer)));
        }

        return length;
    }

    private void ReceiveExactly(int peer, Span<byte> buffer)
    {
        try
        {
            Socket s = _peers[peer]!;
            while (!buffer.IsEmpty)
            {
                SpinForData(s);
                int n = s.Receive(buffer);
                if (n == 0)
                {
                    throw new EndOfStreamException("connection closed");
                }

                buffer = buffer[n..];
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException)
        {
            throw Lost(peer, e);
        }
    }

    /// <summary>
    /// Polls briefly before a blocking receive: a collective's answer usually comes within tens of microseconds, and
    /// waking a thread blocked in the kernel costs about as much again.
    /// </summary>
    private void SpinForData(Socket s)
    {
        if (_options.SpinMicroseconds <= 0 || s.Available > 0)
        {
            return;
        }

        long until = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(_options.SpinMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1e6);
        while (s.Available == 0 && System.Diagnostics.Stopwatch.GetTimestamp() < until)
        {
            Thread.SpinWait(20);
        }
    }

    private int RankOf(int peer) => Rank == 0 ? peer : 0;

    /// <summary>The peer's connection failed: the group is broken; rank 0 tells the other ranks which one before closing.</summary>
    private CollectiveException Lost(int peer, Exception e)
    {
        if (_broken is not null)
        {
            return new CollectiveException(_broken.Message, _broken.Rank, _broken);
        }

        int rank = RankOf(peer);
        string why = e is SocketException { SocketErrorCode: SocketError.TimedOut } or SocketException { SocketErrorCode: SocketError.WouldBlock }
            ? Invariant($"silent for {_options.RankTimeout.TotalSeconds:0.#} s (--rank-timeout)")
            : e.Message;
        return Broke(new CollectiveException(Invariant($"rank {rank} of the tensor-parallel group was lost ({why}); rank {Rank} stops"), rank, e));
    }

    private CollectiveException Broke(CollectiveException e)
    {
        if (_broken is not null)
        {
            return e;
        }

        _broken = e;
        if (Rank == 0)
        {
            byte[] abort = new byte[12];
            BinaryPrimitives.WriteInt32LittleEndian(abort, OpAbort);
            BinaryPrimitives.WriteInt32LittleEndian(abort.AsSpan(4), 4);
            BinaryPrimitives.WriteInt32LittleEndian(abort.AsSpan(8), e.Rank ?? -1);
            for (int r = 1; r < Size; r++)
            {
                try
                {
                    _peers[r]?.Send(abort);
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    // That rank is gone too; the others still hear which was first.
                }
            }
        }

        return e;
    }

    private static async Task ReadExactlyAsync(Socket s, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (!buffer.IsEmpty)
        {
            int n = await s.ReceiveAsync(buffer, cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                throw new EndOfStreamException("the connection closed");
            }

            buffer = buffer[n..];
        }
    }

    private static async Task<string> ReadStringAsync(Socket s, CancellationToken cancellationToken)
    {
        byte[] length = new byte[4];
        await ReadExactlyAsync(s, length, cancellationToken).ConfigureAwait(false);
        int n = BinaryPrimitives.ReadInt32LittleEndian(length);
        if (n is < 0 or > 1 << 16)
        {
            throw new CollectiveException(Invariant($"a hello string of {n} bytes: not a rank of this worker"));
        }

        byte[] text = new byte[n];
        await ReadExactlyAsync(s, text, cancellationToken).ConfigureAwait(false);
        return Encoding.UTF8.GetString(text);
    }

    private static async Task WriteStringAsync(Socket s, string text, CancellationToken cancellationToken)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        byte[] frame = new byte[4 + bytes.Length];
        BinaryPrimitives.WriteInt32LittleEndian(frame, bytes.Length);
        bytes.CopyTo(frame, 4);
        await s.SendAsync(frame, cancellationToken).ConfigureAwait(false);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

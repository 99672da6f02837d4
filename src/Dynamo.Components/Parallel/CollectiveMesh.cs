using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Dynamo.Llm.Parallel;

namespace Dynamo.Components.Parallel;

/// <summary>
/// The links of one rank to every other rank of its group, and the one primitive the collectives are built of: in each
/// step a rank may <see cref="Publish"/> bytes (to every peer or to one, whole or one chunk per peer) and
/// <see cref="Read"/> what its peers published in that step. A peer on this host is reached through the shared-memory
/// slots (one write serves every local peer), another over TCP (a frame per peer). Every wait is bounded by the
/// operation timeout and watches the peer's liveness; the first failure breaks the mesh (Parallel/README.md,
/// "Failure"). Not thread-safe: one thread runs the collectives, any thread may dispose.
/// </summary>
internal sealed partial class CollectiveMesh : IDisposable
{
    /// <summary>Bytes of a TCP frame header: magic and kind (4), length (4), step (8).</summary>
    public const int HeaderBytes = 16;

    private const ushort FrameMagic = 0x4344; // "DC"
    private const ushort DataFrame = 1, AbortFrame = 2, PointFrame = 3;
    private const int PollSliceMicroseconds = 20_000;
    private const int MaxAbortMessageBytes = 1024;

    private static readonly byte[] s_doorbell = [1];

    private readonly int _rank;
    private readonly int _size;
    private readonly Socket?[] _sockets;
    private readonly int[] _localIndex;
    private readonly int _localCount;
    private readonly SharedSlots? _shm;
    private readonly long _timeoutTicks;
    private readonly long _spinTicks;
    private long _spinBudget;
    private readonly TimeSpan _timeout;
    private readonly int[] _sendStart;
    private readonly int[] _sendFrom;
    private readonly int[] _sendTo;
    private readonly byte[] _header = new byte[HeaderBytes];
    private readonly List<Socket> _selectRead = [];
    private readonly List<Socket> _selectWrite = [];
    private byte[] _staging = new byte[256];
    private int _pendingSends;
    private long _step;
    private long _deadline;
    private CollectiveException? _broken;
    private volatile bool _disposed;

    /// <param name="rank">This rank.</param>
    /// <param name="sockets">One connected socket per other rank (index = rank; null at <paramref name="rank"/>).</param>
    /// <param name="localIndex">Per rank, its index among the ranks that share <paramref name="shm"/>, or -1 (TCP).</param>
    /// <param name="shm">The shared slots of this host's ranks, when there are several.</param>
    /// <param name="timeout">The operation timeout.</param>
    /// <param name="spin">How long a wait on a local peer spins before it sleeps.</param>
    public CollectiveMesh(int rank, Socket?[] sockets, int[] localIndex, SharedSlots? shm, TimeSpan timeout, TimeSpan spin)
    {
        _spinTicks = (long)(spin.TotalSeconds * Stopwatch.Frequency);
        _spinBudget = _spinTicks;
        _rank = rank;
        _size = sockets.Length;
        _sockets = sockets;
        _localIndex = localIndex;
        _localCount = shm is null ? 0 : localIndex.Count(i => i >= 0);
        _shm = shm;
        _timeout = timeout;
        _timeoutTicks = (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        _sendStart = new int[_size];
        _sendFrom = new int[_size];
        _sendTo = new int[_size];
        _pointSent = new long[_size];
        _pointReceived = new long[_size];
    }

    /// <summary>Whether <paramref name="peer"/> is reached through shared memory.</summary>
    public bool IsLocal(int peer) => _shm is not null && _localIndex[peer] >= 0;

    /// <summary>Throws when the mesh is disposed (<see cref="ObjectDisposedException"/>) or broken (the failure again).</summary>
    public void CheckUsable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_broken is { } broken)
        {
            throw new CollectiveException(broken.Message, broken.Rank);
        }
    }

    /// <summary>Starts the next step: every rank numbers its steps alike, publishing in it or not.</summary>
    public void BeginStep()
    {
        CheckUsable();
        _step++;
        _deadline = Stopwatch.GetTimestamp() + _timeoutTicks;
        if (_shm is not null)
        {
            _shm.SetEntered(_localIndex[_rank], _step);
            RingSleepers(published: false);
        }
    }

    /// <summary>Ends the step: every byte published over TCP is handed to the kernel (the staging buffer is free again).</summary>
    public void EndStep()
    {
        while (_pendingSends > 0)
        {
            if (PumpSends())
            {
                continue;
            }

            int waiting = FirstPendingSend();
            CheckWaiting(waiting, "read nothing");
            _sockets[waiting]!.Poll(PollSliceMicroseconds, SelectMode.SelectWrite);
        }
    }

    /// <summary>
    /// Publishes <paramref name="data"/> in this step to every peer (<paramref name="onlyTo"/> -1) or one. With
    /// <paramref name="chunked"/>, <paramref name="data"/> holds floats and a TCP peer gets only its own chunk of them
    /// (<see cref="Chunk"/>); a local peer reads whatever part it needs from the slot.
    /// </summary>
    public void Publish(ReadOnlySpan<byte> data, int onlyTo = -1, bool chunked = false)
    {
        if (_shm is not null && (onlyTo < 0 ? _localCount > 1 : _localIndex[onlyTo] >= 0))
        {
            WaitSlotFree();
            _shm.Publish(_localIndex[_rank], _step, data);
            RingSleepers(published: true);
        }

        int needed = 0, targets = 0;
        for (int t = 0; t < _size; t++)
        {
            if (IsTcpTarget(t, onlyTo))
            {
                targets++;
                needed += chunked ? HeaderBytes + (Chunk(data.Length / sizeof(float), _size, t).Length * sizeof(float)) : 0;
            }
        }

        if (targets == 0)
        {
            return;
        }

        if (!chunked)
        {
            needed = HeaderBytes + data.Length;
        }

        if (_staging.Length < needed)
        {
            _staging = new byte[Math.Max(needed, _staging.Length * 2)];
        }

        int at = 0;
        if (!chunked)
        {
            WriteHeader(_staging, DataFrame, data.Length, _step);
            data.CopyTo(_staging.AsSpan(HeaderBytes));
        }

        for (int t = 0; t < _size; t++)
        {
            if (!IsTcpTarget(t, onlyTo))
            {
                continue;
            }

            if (chunked)
            {
                (int Start, int Length) chunk = Chunk(data.Length / sizeof(float), _size, t);
                ReadOnlySpan<byte> part = data.Slice(chunk.Start * sizeof(float), chunk.Length * sizeof(float));
                WriteHeader(_staging.AsSpan(at), DataFrame, part.Length, _step);
                part.CopyTo(_staging.AsSpan(at + HeaderBytes));
                _sendStart[t] = _sendFrom[t] = at;
                _sendTo[t] = at + HeaderBytes + part.Length;
                at = _sendTo[t];
            }
            else
            {
                _sendStart[t] = _sendFrom[t] = 0;
                _sendTo[t] = needed;
            }
        }

        _pendingSends = targets;
        PumpSends();
    }

    /// <summary>
    /// Reads bytes <paramref name="offset"/> .. + destination.Length of what <paramref name="peer"/> published in this
    /// step, which must be <paramref name="total"/> bytes long (over TCP the peer sent exactly this part).
    /// </summary>
    public void Read(int peer, Span<byte> destination, int offset, int total)
    {
        if (IsLocal(peer))
        {
            int local = _localIndex[peer];
            WaitShm(peer, published: true, _step);
            long length = _shm!.PublishedLength(local, _step);
            if (length != total)
            {
                throw Mismatch(peer, length, total);
            }

            _shm.Read(local, _step, offset, destination);
            return;
        }

        int length2 = ReceiveHeader(peer);
        if (length2 != destination.Length)
        {
            throw Mismatch(peer, length2, destination.Length);
        }

        ReceiveExactly(peer, destination);
    }

    /// <summary>Reads whatever <paramref name="peer"/> published in this step (at most destination.Length bytes); returns its length.</summary>
    public int ReadAny(int peer, Span<byte> destination)
    {
        int length;
        if (IsLocal(peer))
        {
            int local = _localIndex[peer];
            WaitShm(peer, published: true, _step);
            long published = _shm!.PublishedLength(local, _step);
            if (published > destination.Length)
            {
                throw Mismatch(peer, published, destination.Length);
            }

            length = (int)published;
            _shm.Read(local, _step, 0, destination[..length]);
            return length;
        }

        length = ReceiveHeader(peer);
        if (length > destination.Length)
        {
            throw Mismatch(peer, length, destination.Length);
        }

        ReceiveExactly(peer, destination[..length]);
        return length;
    }

    /// <summary>Chunk <paramref name="index"/> of <paramref name="count"/> elements split in <paramref name="parts"/> (the same split on every rank).</summary>
    public static (int Start, int Length) Chunk(int count, int parts, int index)
    {
        int start = (int)((long)count * index / parts);
        return (start, (int)((long)count * (index + 1) / parts) - start);
    }

    /// <summary>
    /// Breaks the mesh because of <paramref name="failure"/> (a socket or mapping closed under an operation) unless it
    /// is broken already; returns the exception to throw.
    /// </summary>
    public CollectiveException Fail(Exception failure)
    {
        if (_broken is { } broken)
        {
            return new CollectiveException(broken.Message, broken.Rank, failure);
        }

        return _disposed
            ? Break(_rank, Invariant($"rank {_rank}: the group was disposed during a collective"), failure)
            : Break(null, Invariant($"rank {_rank}: {failure.Message}"), failure);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        try
        {
            _shm?.SetState(_localIndex[_rank], _broken is null ? SharedSlots.Gone : SharedSlots.Broken, _broken?.Rank ?? _rank);
        }
        catch (ObjectDisposedException)
        {
            // Disposed twice at once; the other call finishes.
        }

        foreach (Socket? s in _sockets)
        {
            if (s is not null)
            {
                try
                {
                    s.Shutdown(SocketShutdown.Both);
                }
                catch (SocketException)
                {
                    // Already reset by the peer.
                }

                s.Dispose();
            }
        }

        _shm?.Dispose();
    }

    private bool IsTcpTarget(int t, int onlyTo) => t != _rank && !IsLocal(t) && (onlyTo < 0 || onlyTo == t);

    private static void WriteHeader(Span<byte> header, ushort kind, int length, long step)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(header, FrameMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[2..], kind);
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], length);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], step);
    }

    /// <summary>Receives a frame header from <paramref name="peer"/>, checks it is this step's data, returns its length.</summary>
    private int ReceiveHeader(int peer)
    {
        ReceiveExactly(peer, _header);
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(_header);
        ushort kind = BinaryPrimitives.ReadUInt16LittleEndian(_header.AsSpan(2));
        int length = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(4));
        long step = BinaryPrimitives.ReadInt64LittleEndian(_header.AsSpan(8));
        if (magic == FrameMagic && kind == AbortFrame && length is >= 0 and <= MaxAbortMessageBytes)
        {
            byte[] text = new byte[length];
            ReceiveExactly(peer, text);
            throw Break((int)step, Invariant($"rank {_rank}: rank {peer} gave up: {Encoding.UTF8.GetString(text)}"));
        }

        if (magic != FrameMagic || kind != DataFrame || length < 0)
        {
            throw Break(peer, Invariant($"rank {_rank}: rank {peer} sent something that is not a collectives frame"));
        }

        if (step != _step)
        {
            throw Break(peer, Invariant($"rank {_rank}: rank {peer} sent step {step} while this rank is at step {_step}: the ranks called different collectives"));
        }

        return length;
    }

    /// <summary>
    /// Reads what <paramref name="peer"/>'s socket holds into <paramref name="destination"/> from <paramref name="received"/>
    /// on (advancing it); false when nothing is there yet. A closed or failed connection is the peer lost.
    /// </summary>
    private bool ReceiveSome(int peer, Span<byte> destination, ref int received)
    {
        int n = _sockets[peer]!.Receive(destination[received..], SocketFlags.None, out SocketError error);
        if (error == SocketError.Success)
        {
            if (n == 0)
            {
                throw Lost(peer, "closed its connection");
            }

            received += n;
            return true;
        }

        return error == SocketError.WouldBlock ? false : throw Lost(peer, Invariant($"connection {error}"));
    }

    private void ReceiveExactly(int peer, Span<byte> destination)
    {
        Socket socket = _sockets[peer]!;
        int received = 0;
        while (received < destination.Length)
        {
            if (ReceiveSome(peer, destination, ref received))
            {
                continue;
            }

            if (PumpSends())
            {
                continue;
            }

            CheckWaiting(peer, "sent nothing");
            if (_pendingSends == 0)
            {
                socket.Poll(PollSliceMicroseconds, SelectMode.SelectRead);
            }
            else
            {
                _selectRead.Clear();
                _selectRead.Add(socket);
                _selectWrite.Clear();
                for (int t = 0; t < _size; t++)
                {
                    if (_sendFrom[t] < _sendTo[t])
                    {
                        _selectWrite.Add(_sockets[t]!);
                    }
                }

                Socket.Select(_selectRead, _selectWrite, null, PollSliceMicroseconds);
            }
        }
    }

    /// <summary>Sends what the kernel takes of every pending TCP publication; whether anything moved.</summary>
    private bool PumpSends()
    {
        if (_pendingSends == 0)
        {
            return false;
        }

        bool progressed = false;
        for (int t = 0; t < _size; t++)
        {
            if (_sendFrom[t] >= _sendTo[t])
            {
                continue;
            }

            int n = _sockets[t]!.Send(_staging.AsSpan(_sendFrom[t], _sendTo[t] - _sendFrom[t]), SocketFlags.None, out SocketError error);
            if (error == SocketError.WouldBlock)
            {
                continue;
            }

            if (error != SocketError.Success)
            {
                throw Lost(t, Invariant($"connection {error}"));
            }

            progressed |= n > 0;
            _sendFrom[t] += n;
            if (_sendFrom[t] == _sendTo[t])
            {
                _pendingSends--;
            }
        }

        return progressed;
    }

    private int FirstPendingSend()
    {
        for (int t = 0; t < _size; t++)
        {
            if (_sendFrom[t] < _sendTo[t])
            {
                return t;
            }
        }

        return -1;
    }

    /// <summary>Before this rank overwrites its slot of this step's parity: every local rank has entered the previous step, so is done with the step before, the last to read it.</summary>
    private void WaitSlotFree()
    {
        for (int peer = 0; peer < _size; peer++)
        {
            if (peer != _rank && IsLocal(peer))
            {
                WaitShm(peer, published: false, _step - 1);
            }
        }
    }

    /// <summary>
    /// Waits until local <paramref name="peer"/> has published (or entered) <paramref name="step"/>: spinning a little
    /// (adaptively: a wait that ends while spinning doubles the next spin, up to the spin time; one that has to sleep
    /// halves it, down to 1/32 of it), then asleep on the peer's socket, which it rings after publishing or entering a step when it sees this rank's
    /// waiting flag set (Parallel/README.md, "Waiting"). Either the peer sees the flag or this rank sees the step: both
    /// sides write, then read, and every access is fenced.
    /// </summary>
    private void WaitShm(int peer, bool published, long step)
    {
        int local = _localIndex[peer];
        if (Reached(local, published, step))
        {
            return;
        }

        long start = Stopwatch.GetTimestamp(), budget = _spinBudget;
        for (int i = 1; Stopwatch.GetTimestamp() - start < budget; i++)
        {
            PumpSends();
            if (Reached(local, published, step))
            {
                _spinBudget = Math.Min(_spinTicks, Math.Max(budget * 2, _spinTicks / 32));
                return;
            }

            if ((i & 15) == 0)
            {
                Thread.Yield();
            }
            else
            {
                Thread.SpinWait(20);
            }
        }

        _spinBudget = Math.Max(budget / 2, _spinTicks / 32);
        int me = _localIndex[_rank];
        try
        {
            while (true)
            {
                PumpSends();
                _shm!.SetWaiting(me, WaitingMark(peer, published));
                if (Reached(local, published, step))
                {
                    return;
                }

                CheckLocalPeer(peer, local);
                if (_pendingSends == 0)
                {
                    _sockets[peer]!.Poll(PollSliceMicroseconds, SelectMode.SelectRead);
                }
                else
                {
                    _selectRead.Clear();
                    _selectRead.Add(_sockets[peer]!);
                    _selectWrite.Clear();
                    for (int t = 0; t < _size; t++)
                    {
                        if (_sendFrom[t] < _sendTo[t])
                        {
                            _selectWrite.Add(_sockets[t]!);
                        }
                    }

                    Socket.Select(_selectRead, _selectWrite, null, PollSliceMicroseconds);
                }
            }
        }
        finally
        {
            if (!_disposed)
            {
                _shm!.SetWaiting(me, 0);
            }
        }
    }

    private bool Reached(int local, bool published, long step) => (published ? _shm!.Published(local) : _shm!.Entered(local)) >= step;

    /// <summary>What a sleeper writes in its waiting flag: the rank it waits on and for what (a step entered or published).</summary>
    private static long WaitingMark(int peer, bool published) => ((peer + 1L) * 2) + (published ? 1 : 0);

    /// <summary>
    /// Rings every local peer asleep waiting on this rank (one byte on its socket; a full buffer has rings enough):
    /// on entering a step those waiting for that, on publishing those waiting for either.
    /// </summary>
    private void RingSleepers(bool published)
    {
        for (int p = 0; p < _size; p++)
        {
            if (p != _rank && IsLocal(p))
            {
                long mark = _shm!.Waiting(_localIndex[p]);
                if (mark == WaitingMark(_rank, published: false) || (published && mark == WaitingMark(_rank, published: true)))
                {
                    _sockets[p]!.Send(s_doorbell, SocketFlags.None, out _);
                }
            }
        }
    }

    /// <summary>
    /// A local peer that left, broke or closed its connection breaks this rank too; so does the deadline. Rings waiting
    /// on its socket are read and dropped.
    /// </summary>
    private void CheckLocalPeer(int peer, int local)
    {
        long state = _shm!.State(local);
        if (state == SharedSlots.Gone)
        {
            throw Lost(peer, "left the group");
        }

        if (state == SharedSlots.Broken)
        {
            int lost = _shm.LostRank(local);
            throw Break(lost, Invariant($"rank {_rank}: rank {peer} gave up: it lost rank {lost}"));
        }

        Socket socket = _sockets[peer]!;
        while (true)
        {
            int n = socket.Receive(_header, SocketFlags.None, out SocketError error);
            if (error == SocketError.WouldBlock)
            {
                break;
            }

            if (error != SocketError.Success || n == 0)
            {
                throw Lost(peer, error == SocketError.Success ? "closed its connection" : Invariant($"connection {error}"));
            }

            if (n < _header.Length)
            {
                break;
            }
        }

        CheckWaiting(peer, "published nothing");
    }

    /// <summary>Throws when this rank is disposed or the step's deadline has passed while waiting on <paramref name="peer"/>.</summary>
    private void CheckWaiting(int peer, string what)
    {
        if (_disposed)
        {
            throw Break(_rank, Invariant($"rank {_rank}: the group was disposed during a collective"));
        }

        if (Stopwatch.GetTimestamp() > _deadline)
        {
            throw Break(peer, Invariant($"rank {_rank}: rank {peer} {what} for {_timeout.TotalSeconds:0.#} s at step {_step} (stalled, or it called another collective)"));
        }
    }

    private CollectiveException Lost(int peer, string how) => Break(peer, Invariant($"rank {_rank}: rank {peer} is gone ({how})"));

    private CollectiveException Mismatch(int peer, long length, long expected) =>
        Break(peer, Invariant($"rank {_rank}: rank {peer} published {length} bytes at step {_step} where rank {_rank} expected {expected}: the ranks called different collectives or lengths"));

    /// <summary>
    /// Breaks the mesh once: records the failure, tells the local peers (the control line) and the TCP peers (an abort
    /// frame where no frame is half sent), and shuts the connections so that no peer waits on this rank.
    /// </summary>
    public CollectiveException Break(int? lostRank, string message, Exception? inner = null)
    {
        if (_broken is { } already)
        {
            return new CollectiveException(already.Message, already.Rank, inner);
        }

        var failure = new CollectiveException(message, lostRank, inner);
        _broken = failure;
        if (_disposed)
        {
            return failure;
        }

        try
        {
            _shm?.SetState(_localIndex[_rank], SharedSlots.Broken, lostRank ?? _rank);
            byte[] text = Encoding.UTF8.GetBytes(message.Length > 300 ? message[..300] : message);
            byte[] frame = new byte[HeaderBytes + text.Length];
            WriteHeader(frame, AbortFrame, text.Length, lostRank ?? _rank);
            text.CopyTo(frame, HeaderBytes);
            for (int t = 0; t < _size; t++)
            {
                Socket? s = _sockets[t];
                if (s is null)
                {
                    continue;
                }

                bool halfSent = _sendFrom[t] < _sendTo[t] && _sendFrom[t] > _sendStart[t];
                if (!IsLocal(t) && !halfSent)
                {
                    s.Send(frame, SocketFlags.None, out _);
                }

                s.Shutdown(SocketShutdown.Send);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Best effort: the peers find out from the closed connections anyway.
        }

        return failure;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace Dynamo.Components.Parallel;

/// <summary>
/// Point-to-point messages (pipeline parallelism: activations from one stage to the next, logits back to rank 0). They
/// do not take part in the numbered steps: only the two ranks are involved. Over TCP a message is one frame of its own
/// kind whose step field is the message's number between the two ranks (checked on arrival); between ranks of a host it
/// goes through their mailbox in the shared file, piece by piece. One thread may send while another receives (the
/// sender and receiver keep separate state); neither overlaps the collectives (the caller finishes its sends before
/// it joins a collective, so a socket never carries a step frame and a point frame at once). Waits are bounded by the
/// operation timeout and watch the peer's liveness like the collectives' waits; a failure breaks the mesh.
/// </summary>
internal sealed partial class CollectiveMesh
{
    private readonly long[] _pointSent;
    private readonly long[] _pointReceived;
    private readonly byte[] _pointSendHeader = new byte[HeaderBytes];
    private readonly byte[] _pointReceiveHeader = new byte[HeaderBytes];

    /// <summary>Sends <paramref name="data"/> to <paramref name="peer"/>; returns when the bytes are in its mailbox or the kernel's buffer.</summary>
    public void SendTo(int peer, ReadOnlySpan<byte> data)
    {
        CheckUsable();
        CheckPeer(peer);
        if (IsLocal(peer))
        {
            int me = _localIndex[_rank], them = _localIndex[peer];
            int piece = _shm!.SlotBytes;
            for (int at = 0; at == 0 || at < data.Length; at += piece)
            {
                long number = ++_pointSent[peer];
                WaitMail(peer, me, them, number - 1, taken: true);
                _shm.PostMail(me, them, number, data.Slice(at, Math.Min(piece, data.Length - at)));
            }

            return;
        }

        WriteHeader(_pointSendHeader, PointFrame, data.Length, ++_pointSent[peer]);
        long deadline = Stopwatch.GetTimestamp() + _timeoutTicks;
        SendAll(peer, _pointSendHeader, deadline);
        SendAll(peer, data, deadline);
    }

    /// <summary>Receives the next message <paramref name="peer"/> sent to this rank, which must be destination.Length bytes.</summary>
    public void ReceiveFrom(int peer, Span<byte> destination)
    {
        CheckUsable();
        CheckPeer(peer);
        if (IsLocal(peer))
        {
            int me = _localIndex[_rank], them = _localIndex[peer];
            int piece = _shm!.SlotBytes;
            for (int at = 0; at == 0 || at < destination.Length; at += piece)
            {
                long number = ++_pointReceived[peer];
                WaitMail(peer, them, me, number, taken: false);
                int expected = Math.Min(piece, destination.Length - at);
                long length = _shm.MailLength(them, me);
                if (length != expected)
                {
                    throw Break(peer, Invariant($"rank {_rank}: rank {peer} sent a piece of {length} bytes where {expected} were expected: the ranks disagree on the message"));
                }

                _shm.TakeMail(them, me, number, destination.Slice(at, expected));
            }

            return;
        }

        long until = Stopwatch.GetTimestamp() + _timeoutTicks;
        ReceiveAll(peer, _pointReceiveHeader, until);
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(_pointReceiveHeader);
        ushort kind = BinaryPrimitives.ReadUInt16LittleEndian(_pointReceiveHeader.AsSpan(2));
        int bytes = BinaryPrimitives.ReadInt32LittleEndian(_pointReceiveHeader.AsSpan(4));
        long sequence = BinaryPrimitives.ReadInt64LittleEndian(_pointReceiveHeader.AsSpan(8));
        if (magic == FrameMagic && kind == AbortFrame && bytes is >= 0 and <= MaxAbortMessageBytes)
        {
            byte[] text = new byte[bytes];
            ReceiveAll(peer, text, until);
            throw Break((int)sequence, Invariant($"rank {_rank}: rank {peer} gave up: {Encoding.UTF8.GetString(text)}"));
        }

        if (magic != FrameMagic || kind != PointFrame)
        {
            throw Break(peer, Invariant($"rank {_rank}: rank {peer} sent something that is not a point-to-point frame (kind {kind})"));
        }

        long expectedNumber = ++_pointReceived[peer];
        if (bytes != destination.Length || sequence != expectedNumber)
        {
            throw Break(peer, Invariant($"rank {_rank}: rank {peer} sent message {sequence} of {bytes} bytes where message {expectedNumber} of {destination.Length} was expected: the ranks disagree on the plan"));
        }

        ReceiveAll(peer, destination, until);
    }

    private void CheckPeer(int peer)
    {
        if ((uint)peer >= (uint)_size || peer == _rank)
        {
            throw new ArgumentOutOfRangeException(nameof(peer), Invariant($"rank {peer} is not another rank of a group of {_size}"));
        }
    }

    private void SendAll(int peer, ReadOnlySpan<byte> data, long deadline)
    {
        Socket socket = _sockets[peer]!;
        for (int sent = 0; sent < data.Length;)
        {
            int n = socket.Send(data[sent..], SocketFlags.None, out SocketError error);
            if (error == SocketError.Success)
            {
                sent += n;
                continue;
            }

            if (error != SocketError.WouldBlock)
            {
                throw Lost(peer, Invariant($"connection {error}"));
            }

            CheckPointWait(peer, deadline, "read nothing");
            socket.Poll(PollSliceMicroseconds, SelectMode.SelectWrite);
        }
    }

    private void ReceiveAll(int peer, Span<byte> destination, long deadline)
    {
        Socket socket = _sockets[peer]!;
        for (int received = 0; received < destination.Length;)
        {
            if (ReceiveSome(peer, destination, ref received))
            {
                continue;
            }

            CheckPointWait(peer, deadline, "sent nothing");
            socket.Poll(PollSliceMicroseconds, SelectMode.SelectRead);
        }
    }

    /// <summary>
    /// Waits for a mailbox condition: spinning for the spin time, yielding for up to 20 ms (a pipeline stage waits about
    /// the other stages' compute, and a 1 ms sleep would add up to a millisecond per hand-over), then sleeping a millisecond at a time
    /// (a local peer's mailbox has no doorbell: its socket's rings belong to the collectives' waits), checking the
    /// peer's control line, its socket and the deadline between sleeps.
    /// </summary>
    private void WaitMail(int peer, int from, int to, long number, bool taken)
    {
        bool Reached() => (taken ? _shm!.MailTaken(from, to) : _shm!.MailPosted(from, to)) >= number;
        if (Reached())
        {
            return;
        }

        string what = taken ? "took nothing" : "sent nothing";
        long start = Stopwatch.GetTimestamp(), deadline = start + _timeoutTicks, yieldUntil = start + (Stopwatch.Frequency / 50);
        while (!Reached())
        {
            long now = Stopwatch.GetTimestamp();
            if (now < start + _spinTicks)
            {
                Thread.SpinWait(20);
                continue;
            }

            if (now < yieldUntil)
            {
                Thread.Yield();
                continue;
            }

            CheckMailPeer(peer, deadline, what);
            Thread.Sleep(1);
        }
    }

    /// <summary>A local peer gone, broken or with its connection closed, or the deadline passed: the mesh breaks.</summary>
    private void CheckMailPeer(int peer, long deadline, string what)
    {
        int local = _localIndex[peer];
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
        if (socket.Poll(0, SelectMode.SelectRead) && socket.Available == 0)
        {
            throw Lost(peer, "closed its connection");
        }

        CheckPointWait(peer, deadline, what);
    }

    private void CheckPointWait(int peer, long deadline, string what)
    {
        CheckUsable();
        if (_disposed)
        {
            throw Break(_rank, Invariant($"rank {_rank}: the group was disposed during a send or receive"));
        }

        if (Stopwatch.GetTimestamp() > deadline)
        {
            throw Break(peer, Invariant($"rank {_rank}: rank {peer} {what} for {_timeout.TotalSeconds:0.#} s (a point-to-point message: stalled, or the ranks disagree on the plan)"));
        }
    }
}

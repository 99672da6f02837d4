using System.Diagnostics;
using System.Globalization;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// One request a <see cref="NatsRequestServer"/> is serving: its frame sequence, flow-control window and
/// cancellation, and, for a client that sends keepalives, its liveness and the frames it may still need.
/// Frames go out under one lock, numbered in order (the data loop, the heartbeat timer and a resend are the
/// only senders); everything else is set from the control subscription.
/// </summary>
internal sealed class NatsServedRequest : IDisposable
{
    /// <summary>Silent keepalive checks after which the client counts as gone.</summary>
    public const int ClientSilenceChecks = 4;

    private readonly CancellationTokenSource _cts = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly SemaphoreSlim _ackSignal = new(0, int.MaxValue);
    private readonly Lock _sentLock = new();
    private readonly List<SentFrame> _sent = [];
    private long _nextSeq;
    private long _dataSent;
    private long _dataAcked;
    private long _lastSendTimestamp = Stopwatch.GetTimestamp();
    private long _lastControlTimestamp = Stopwatch.GetTimestamp();
    private long _lastCheckTimestamp = Stopwatch.GetTimestamp();
    private long _confirmedSeq;
    private long _finalSeq = -1;
    private int _silentChecks;
    private int _held;
    private int _reason;
    private bool _finished;

    public NatsServedRequest(long stream, string inbox, string controlSubject, string requestId, DateTimeOffset? deadline, byte[] payload, TimeSpan? keepalive = null)
    {
        Stream = stream;
        Inbox = inbox;
        ControlSubject = controlSubject;
        RequestId = requestId;
        Deadline = deadline;
        Payload = payload;
        KeepaliveInterval = keepalive;
    }

    public long Stream { get; }

    public string Inbox { get; }

    public string ControlSubject { get; }

    public string RequestId { get; }

    public DateTimeOffset? Deadline { get; }

    public byte[] Payload { get; }

    /// <summary>The client's span (<c>traceparent</c>, <c>tracestate</c>); default when it sent none.</summary>
    public ActivityContext TraceParent { get; init; }

    /// <summary>The interval of the client's keepalives (<c>Dyn-Keepalive</c>); null for a client that sends none (frames are then neither kept nor held).</summary>
    public TimeSpan? KeepaliveInterval { get; }

    public CancellationToken Token => _cts.Token;

    /// <summary>Why the token was cancelled: the first <see cref="Cancel"/> wins; None with a cancelled token means the deadline.</summary>
    public NatsCancelReason Reason => (NatsCancelReason)Volatile.Read(ref _reason);

    /// <summary>Data frames sent and not yet acknowledged.</summary>
    public long Unacknowledged => Volatile.Read(ref _dataSent) - Volatile.Read(ref _dataAcked);

    /// <summary>The final frame (end or error) went out.</summary>
    public bool FinalSent => Volatile.Read(ref _finalSeq) >= 0;

    /// <summary>The client reported every frame received, the final one included.</summary>
    public bool AllConfirmed => FinalSent && Volatile.Read(ref _confirmedSeq) > Volatile.Read(ref _finalSeq);

    /// <summary>Frames are held back until the client is heard from (it may not be subscribed after a NATS restart).</summary>
    public bool Held => Volatile.Read(ref _held) != 0;

    /// <summary>Frames kept for a resend (a test hook for the bound).</summary>
    internal int KeptFrames
    {
        get
        {
            lock (_sentLock)
            {
                return _sent.Count;
            }
        }
    }

    public void CancelAt(TimeSpan delay) => _cts.CancelAfter(delay);

    public void Cancel(NatsCancelReason reason)
    {
        Interlocked.CompareExchange(ref _reason, (int)reason, (int)NatsCancelReason.None);
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>The client has taken <paramref name="consumed"/> data frames in all.</summary>
    public void OnAck(long consumed)
    {
        long seen = Volatile.Read(ref _dataAcked);
        while (consumed > seen)
        {
            long was = Interlocked.CompareExchange(ref _dataAcked, consumed, seen);
            if (was == seen)
            {
                Signal();
                return;
            }

            seen = was;
        }
    }

    /// <summary>
    /// A control message arrived: the client is alive (and subscribed). <paramref name="received"/> (its
    /// <c>Dyn-Seq</c>) is the next frame it expects: the frames before it are no longer kept.
    /// </summary>
    public void OnControl(long? received)
    {
        Volatile.Write(ref _lastControlTimestamp, Stopwatch.GetTimestamp());
        Volatile.Write(ref _silentChecks, 0);
        if (received is not { } seq)
        {
            return;
        }

        long confirmed = Volatile.Read(ref _confirmedSeq);
        while (seq > confirmed)
        {
            long was = Interlocked.CompareExchange(ref _confirmedSeq, seq, confirmed);
            if (was == confirmed)
            {
                lock (_sentLock)
                {
                    int drop = 0;
                    while (drop < _sent.Count && _sent[drop].Seq < seq)
                    {
                        drop++;
                    }

                    _sent.RemoveRange(0, drop);
                }

                return;
            }

            confirmed = was;
        }
    }

    /// <summary>
    /// Holds frames back until the client is heard from: a frame drew "no responders" (the client's inbox is
    /// not subscribed now) or this server's connection reopened (frames may have been lost). Only for a client
    /// that sends keepalives; returns whether the request is held.
    /// </summary>
    public bool Hold()
    {
        if (KeepaliveInterval is null)
        {
            return false;
        }

        Volatile.Write(ref _held, 1);
        return true;
    }

    /// <summary>
    /// One liveness check of a client that sends keepalives, run every tick of the server's timer: a check is
    /// due each keepalive interval, and counts as silent when no control message came for that long. A check
    /// counts only when it runs and only while this server's connection is open (<paramref name="canHear"/>):
    /// a stall of this process counts once, and the control messages buffered meanwhile are read before the
    /// next check. True after <see cref="ClientSilenceChecks"/> silent checks in a row.
    /// </summary>
    public bool ClientSilent(bool canHear)
    {
        if (KeepaliveInterval is not { } interval)
        {
            return false;
        }

        long now = Stopwatch.GetTimestamp();
        if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastCheckTimestamp), now) < interval)
        {
            return false;
        }

        Volatile.Write(ref _lastCheckTimestamp, now);
        if (!canHear || Stopwatch.GetElapsedTime(Volatile.Read(ref _lastControlTimestamp), now) < interval)
        {
            return false;
        }

        return Interlocked.Increment(ref _silentChecks) >= ClientSilenceChecks;
    }

    /// <summary>Waits while <paramref name="window"/> data frames are unacknowledged or frames are held; a full window without an ack for <paramref name="ackTimeout"/> cancels the request.</summary>
    public async ValueTask WaitForWindowAsync(int window, TimeSpan ackTimeout)
    {
        while (true)
        {
            if (Held)
            {
                // Bounded by the keepalive check: a client not heard from is cancelled.
                await _ackSignal.WaitAsync(_cts.Token).ConfigureAwait(false);
                continue;
            }

            if (Unacknowledged < window)
            {
                return;
            }

            if (!await _ackSignal.WaitAsync(ackTimeout, _cts.Token).ConfigureAwait(false))
            {
                Cancel(NatsCancelReason.AckTimeout);
                _cts.Token.ThrowIfCancellationRequested();
            }
        }
    }

    public ValueTask<bool> SendAcceptAsync(NatsConnection connection, int window, CancellationToken cancellationToken) =>
        SendAsync(connection, new SentFrame(0, NatsWire.FrameAccept, default, null, null, window), false, cancellationToken);

    public async ValueTask SendDataAsync(NatsConnection connection, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (await SendAsync(connection, new SentFrame(0, NatsWire.FrameData, data, null, null, 0), false, cancellationToken).ConfigureAwait(false))
        {
            Interlocked.Increment(ref _dataSent);
        }
    }

    public ValueTask<bool> SendEndAsync(NatsConnection connection, CancellationToken cancellationToken) =>
        SendAsync(connection, new SentFrame(0, NatsWire.FrameEnd, default, null, null, 0), true, cancellationToken);

    public ValueTask<bool> SendErrorAsync(NatsConnection connection, RequestErrorKind kind, string code, string message, CancellationToken cancellationToken)
    {
        byte[] body = System.Text.Encoding.UTF8.GetBytes(message.Length > 4000 ? message[..4000] : message);
        return SendAsync(connection, new SentFrame(0, NatsWire.FrameError, body, kind, code, 0), true, cancellationToken);
    }

    /// <summary>Sends a heartbeat if nothing went out for <paramref name="interval"/>, frames are not held, and no other frame is being sent.</summary>
    public async ValueTask SendHeartbeatIfIdleAsync(NatsConnection connection, TimeSpan interval, CancellationToken cancellationToken)
    {
        if (Held || Stopwatch.GetElapsedTime(Volatile.Read(ref _lastSendTimestamp)) < interval || !_sendLock.Wait(0, CancellationToken.None))
        {
            return;
        }

        try
        {
            if (!_finished && Stopwatch.GetElapsedTime(_lastSendTimestamp) >= interval)
            {
                await PublishAsync(connection, new SentFrame(0, NatsWire.FrameHeartbeat, default, null, null, 0), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>
    /// Sends again, with their own sequence numbers, the kept frames from <paramref name="from"/> on (the
    /// client's <c>Dyn-Seq</c>), then lets frames flow again. Returns how many went out.
    /// </summary>
    public async ValueTask<int> ResendAsync(NatsConnection connection, long from, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            SentFrame[] frames;
            lock (_sentLock)
            {
                frames = [.. _sent.Where(f => f.Seq >= from)];
            }

            foreach (SentFrame frame in frames)
            {
                await connection.PublishAsync(Inbox, frame.Body, Headers(frame), replyTo: ControlSubject, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            Volatile.Write(ref _lastSendTimestamp, Stopwatch.GetTimestamp());
            Volatile.Write(ref _held, 0);
            Signal();
            return frames.Length;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public void Dispose()
    {
        _cts.Dispose();
        _sendLock.Dispose();
        _ackSignal.Dispose();
    }

    private void Signal()
    {
        try
        {
            _ackSignal.Release();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async ValueTask<bool> SendAsync(NatsConnection connection, SentFrame frame, bool final, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_finished)
            {
                return false;
            }

            long seq = await PublishAsync(connection, frame, cancellationToken).ConfigureAwait(false);
            _finished = final;
            if (final)
            {
                Volatile.Write(ref _finalSeq, seq);
            }

            return true;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    // Called under _sendLock. The reply-to is this request's control subject: when the client's inbox is
    // gone, the NATS server answers a frame with a "no responders" status there. For a client that sends
    // keepalives the frame is kept until the client reports it received, and a publish that had to wait for a
    // reconnect holds the frames after it (the client may not be subscribed again yet).
    private async ValueTask<long> PublishAsync(NatsConnection connection, SentFrame frame, CancellationToken cancellationToken)
    {
        frame = frame with { Seq = _nextSeq };
        bool wasOpen = connection.ConnectionState == NatsConnectionState.Open;
        await connection.PublishAsync(Inbox, frame.Body, Headers(frame), replyTo: ControlSubject, cancellationToken: cancellationToken).ConfigureAwait(false);
        if (KeepaliveInterval is not null)
        {
            lock (_sentLock)
            {
                _sent.Add(frame with { Body = frame.Body.IsEmpty ? default : frame.Body.ToArray() });
            }

            if (!wasOpen)
            {
                Hold();
            }
        }

        _nextSeq++;
        Volatile.Write(ref _lastSendTimestamp, Stopwatch.GetTimestamp());
        return frame.Seq;
    }

    private NatsHeaders Headers(SentFrame frame)
    {
        var headers = new NatsHeaders
        {
            [NatsWire.Frame] = frame.Frame,
            [NatsWire.Seq] = frame.Seq.ToString(CultureInfo.InvariantCulture),
        };
        if (frame.Window > 0)
        {
            headers[NatsWire.CtlSubject] = ControlSubject;
            headers[NatsWire.Window] = frame.Window.ToString(CultureInfo.InvariantCulture);
            if (KeepaliveInterval is { } keepalive)
            {
                headers[NatsWire.Keepalive] = ((long)keepalive.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
            }
        }

        if (frame.Kind is { } k)
        {
            headers[NatsWire.ErrorKind] = k.ToString();
            headers[NatsWire.ErrorCode] = frame.Code ?? "internal";
        }

        return headers;
    }

    /// <summary>A frame as sent (and, for a client with keepalives, as kept for a resend).</summary>
    private readonly record struct SentFrame(long Seq, string Frame, ReadOnlyMemory<byte> Body, RequestErrorKind? Kind, string? Code, int Window);
}

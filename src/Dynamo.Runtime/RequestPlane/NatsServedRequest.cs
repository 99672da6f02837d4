using System.Diagnostics;
using System.Globalization;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// One request a <see cref="NatsRequestServer"/> is serving: its frame sequence, flow-control window and
/// cancellation. Frames go out under one lock, numbered in order (the data loop and the heartbeat timer
/// are the only senders); everything else is set from the control subscription.
/// </summary>
internal sealed class NatsServedRequest : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly SemaphoreSlim _ackSignal = new(0, int.MaxValue);
    private long _nextSeq;
    private long _dataSent;
    private long _dataAcked;
    private long _lastSendTimestamp = Stopwatch.GetTimestamp();
    private int _reason;
    private bool _finished;

    public NatsServedRequest(long stream, string inbox, string controlSubject, string requestId, DateTimeOffset? deadline, byte[] payload)
    {
        Stream = stream;
        Inbox = inbox;
        ControlSubject = controlSubject;
        RequestId = requestId;
        Deadline = deadline;
        Payload = payload;
    }

    public long Stream { get; }

    public string Inbox { get; }

    public string ControlSubject { get; }

    public string RequestId { get; }

    public DateTimeOffset? Deadline { get; }

    public byte[] Payload { get; }

    public CancellationToken Token => _cts.Token;

    /// <summary>Why the token was cancelled: the first <see cref="Cancel"/> wins; None with a cancelled token means the deadline.</summary>
    public NatsCancelReason Reason => (NatsCancelReason)Volatile.Read(ref _reason);

    /// <summary>Data frames sent and not yet acknowledged.</summary>
    public long Unacknowledged => Volatile.Read(ref _dataSent) - Volatile.Read(ref _dataAcked);

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
                _ackSignal.Release();
                return;
            }

            seen = was;
        }
    }

    /// <summary>Waits while <paramref name="window"/> data frames are unacknowledged; a silence of <paramref name="ackTimeout"/> cancels the request.</summary>
    public async ValueTask WaitForWindowAsync(int window, TimeSpan ackTimeout)
    {
        while (Unacknowledged >= window)
        {
            if (!await _ackSignal.WaitAsync(ackTimeout, _cts.Token).ConfigureAwait(false))
            {
                Cancel(NatsCancelReason.AckTimeout);
                _cts.Token.ThrowIfCancellationRequested();
            }
        }
    }

    public ValueTask<bool> SendAcceptAsync(NatsConnection connection, int window, CancellationToken cancellationToken) =>
        SendAsync(connection, NatsWire.FrameAccept, default, null, null, window, false, cancellationToken);

    public async ValueTask SendDataAsync(NatsConnection connection, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        if (await SendAsync(connection, NatsWire.FrameData, data, null, null, 0, false, cancellationToken).ConfigureAwait(false))
        {
            Interlocked.Increment(ref _dataSent);
        }
    }

    public ValueTask<bool> SendEndAsync(NatsConnection connection, CancellationToken cancellationToken) =>
        SendAsync(connection, NatsWire.FrameEnd, default, null, null, 0, true, cancellationToken);

    public ValueTask<bool> SendErrorAsync(NatsConnection connection, RequestErrorKind kind, string code, string message, CancellationToken cancellationToken)
    {
        byte[] body = System.Text.Encoding.UTF8.GetBytes(message.Length > 4000 ? message[..4000] : message);
        return SendAsync(connection, NatsWire.FrameError, body, kind, code, 0, true, cancellationToken);
    }

    /// <summary>Sends a heartbeat if nothing went out for <paramref name="interval"/> and no other frame is being sent.</summary>
    public async ValueTask SendHeartbeatIfIdleAsync(NatsConnection connection, TimeSpan interval, CancellationToken cancellationToken)
    {
        if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastSendTimestamp)) < interval || !_sendLock.Wait(0, CancellationToken.None))
        {
            return;
        }

        try
        {
            if (!_finished && Stopwatch.GetElapsedTime(_lastSendTimestamp) >= interval)
            {
                await PublishAsync(connection, NatsWire.FrameHeartbeat, default, null, null, 0, cancellationToken).ConfigureAwait(false);
            }
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

    private async ValueTask<bool> SendAsync(
        NatsConnection connection, string frame, ReadOnlyMemory<byte> body, RequestErrorKind? kind, string? code, int window, bool final, CancellationToken cancellationToken)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_finished)
            {
                return false;
            }

            await PublishAsync(connection, frame, body, kind, code, window, cancellationToken).ConfigureAwait(false);
            _finished = final;
            return true;
        }
        finally
        {
            _sendLock.Release();
        }
    }

    // Called under _sendLock. The reply-to is this request's control subject: when the client's inbox is
    // gone, the NATS server answers a frame with a "no responders" status there, and the request is cancelled.
    private async ValueTask PublishAsync(
        NatsConnection connection, string frame, ReadOnlyMemory<byte> body, RequestErrorKind? kind, string? code, int window, CancellationToken cancellationToken)
    {
        var headers = new NatsHeaders
        {
            [NatsWire.Frame] = frame,
            [NatsWire.Seq] = _nextSeq.ToString(CultureInfo.InvariantCulture),
        };
        if (window > 0)
        {
            headers[NatsWire.CtlSubject] = ControlSubject;
            headers[NatsWire.Window] = window.ToString(CultureInfo.InvariantCulture);
        }

        if (kind is { } k)
        {
            headers[NatsWire.ErrorKind] = k.ToString();
            headers[NatsWire.ErrorCode] = code ?? "internal";
        }

        await connection.PublishAsync(Inbox, body, headers, replyTo: ControlSubject, cancellationToken: cancellationToken).ConfigureAwait(false);
        _nextSeq++;
        Volatile.Write(ref _lastSendTimestamp, Stopwatch.GetTimestamp());
    }
}

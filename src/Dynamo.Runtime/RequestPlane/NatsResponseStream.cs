using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// The client side of one request on <see cref="NatsRequestPlane"/>: publishes it with a fresh inbox, reads
/// frames in sequence, acknowledges data as the consumer takes it, keeps the server informed that it is alive
/// (<see cref="Keepalive"/>), asks for lost frames again, and enforces the accept, idle, unavailable and
/// deadline timeouts. Disposing it before the end cancels the request on the server. Wire contract: README.md.
/// </summary>
internal sealed class NatsResponseStream : IAsyncDisposable
{
    private static readonly TimeSpan CancelSendTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Silent checks that make a server unreachable (see <see cref="ReadFrameAsync"/>).</summary>
    private const int SilenceChecks = 4;

    private readonly NatsConnection _connection;
    private readonly NatsConnectionWatch _watch;
    private readonly string _subject;
    private readonly RequestOptions _options;
    private readonly TimeSpan _keepaliveInterval;
    private readonly TimeSpan _unavailableTimeout;
    private readonly string _requestId;
    private readonly CancellationToken _cancellationToken;
    private INatsSub<byte[]>? _inbox;
    private CancellationTokenSource? _timeout;
    private string? _controlSubject;
    private DateTimeOffset? _deadline;
    private long _expectedSeq;
    private long _consumed;
    private long _acknowledged;
    private long _ackEvery = 1;
    private long _lastControlSent;
    private long _reopeningsSeen;
    private long _resyncSince;
    private long _lastResend;
    private bool _sent;
    private bool _accepted;
    private bool _acceptSeen;
    private bool _serverResumes;
    private bool _completed;
    private bool _gaveUp;
    private int _closed;

    public NatsResponseStream(
        NatsConnection connection, NatsConnectionWatch watch, string subject, RequestOptions options, NatsPlaneOptions planeOptions, CancellationToken cancellationToken)
    {
        _connection = connection;
        _watch = watch;
        _subject = subject;
        _options = options;
        _keepaliveInterval = planeOptions.HeartbeatInterval;
        _unavailableTimeout = planeOptions.UnavailableTimeout;
        _requestId = options.RequestId.Length > 0 ? options.RequestId : Guid.NewGuid().ToString("N");
        _cancellationToken = cancellationToken;
        _reopeningsSeen = watch.Reopenings;
    }

    public ReadOnlyMemory<byte> Current { get; private set; }

    /// <summary>
    /// Publishes the request. While the connection is down it first waits for it, at most
    /// <see cref="NatsPlaneOptions.UnavailableTimeout"/>, then throws <see cref="RequestErrorKind.Unavailable"/>.
    /// </summary>
    public async ValueTask StartAsync(ReadOnlyMemory<byte> payload)
    {
        var headers = new NatsHeaders
        {
            [NatsWire.Version] = NatsWire.CurrentVersion,
            [NatsWire.RequestId] = _requestId,
            [NatsWire.Keepalive] = ((long)Math.Ceiling(_keepaliveInterval.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture),
        };
        (string? traceParent, string? traceState) = TraceContext.Outgoing();
        if (traceParent is not null)
        {
            headers[TraceContext.TraceParent] = traceParent;
            if (!string.IsNullOrEmpty(traceState))
            {
                headers[TraceContext.TraceState] = traceState;
            }
        }

        if (_options.Deadline is { } deadline)
        {
            _deadline = DateTimeOffset.UtcNow + deadline;
            headers[NatsWire.Deadline] = _deadline.Value.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture);
        }

        int maxPayload = _connection.ServerInfo?.MaxPayload ?? 0;
        if (maxPayload > 0 && payload.Length > maxPayload)
        {
            throw TooLarge(payload.Length, maxPayload, null);
        }

        // Subscribing and publishing wait for a reconnect without end: bound them.
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(_cancellationToken);
        bound.CancelAfter(_unavailableTimeout);
        try
        {
            if (!await _watch.WaitUntilCanSendAsync(_unavailableTimeout, bound.Token).ConfigureAwait(false))
            {
                throw Unavailable();
            }

            string inbox = _connection.NewInbox();
            _inbox = await _connection.SubscribeCoreAsync<byte[]>(inbox, cancellationToken: bound.Token).ConfigureAwait(false);
            await _connection.PublishAsync(_subject, payload, headers, replyTo: inbox, cancellationToken: bound.Token).ConfigureAwait(false);
            _sent = true;
            Volatile.Write(ref _lastControlSent, Stopwatch.GetTimestamp());
        }
        catch (OperationCanceledException e) when (!_cancellationToken.IsCancellationRequested)
        {
            throw Unavailable(e);
        }
        catch (NatsPayloadTooLargeException e)
        {
            throw TooLarge(payload.Length, maxPayload, e);
        }
        catch (Exception e) when (e is NatsException or ObjectDisposedException)
        {
            throw new RequestPlaneException(RequestErrorKind.Transport, "transport", $"request {_requestId} to {_subject} could not be sent: {e.Message}", e);
        }
    }

    public async ValueTask<bool> MoveNextAsync()
    {
        while (true)
        {
            NatsMsg<byte[]> msg = await ReadFrameAsync().ConfigureAwait(false);
            if (msg.HasNoResponders)
            {
                _completed = true;
                throw _accepted
                    ? new RequestPlaneException(RequestErrorKind.Unreachable, "unreachable", $"the server of {_subject} handling request {_requestId} went away")
                    : RequestErrors.NoResponders(_subject, _requestId);
            }

            NatsHeaders? headers = msg.Headers;
            string? frame = Header(headers, NatsWire.Frame);
            if (!long.TryParse(Header(headers, NatsWire.Seq), NumberStyles.None, CultureInfo.InvariantCulture, out long seq) || frame is null)
            {
                _completed = true;
                throw new RequestPlaneException(RequestErrorKind.Transport, "protocol", $"request {_requestId} to {_subject}: a reply without {NatsWire.Frame}/{NatsWire.Seq} headers (not a Dynamo server?)");
            }

            if (msg.ReplyTo is { Length: > 0 } replyTo)
            {
                if (_controlSubject is null)
                {
                    Volatile.Write(ref _controlSubject, replyTo);
                }
                else if (replyTo != _controlSubject)
                {
                    _completed = true;
                    throw new RequestPlaneException(RequestErrorKind.Transport, "mixed_servers", $"request {_requestId} to {_subject}: frames came from two servers (several servers on the subject outside one queue group?)");
                }
            }

            if (seq < _expectedSeq)
            {
                continue; // sent again after a resend, and it had arrived already
            }

            if (seq > _expectedSeq)
            {
                await ResyncAsync(seq).ConfigureAwait(false);
                continue;
            }

            _resyncSince = 0;
            Volatile.Write(ref _expectedSeq, seq + 1);
            _accepted = true;
            switch (frame)
            {
                case NatsWire.FrameData:
                    Current = msg.Data ?? [];
                    long consumed = Interlocked.Increment(ref _consumed);
                    if (consumed - _acknowledged >= _ackEvery && _controlSubject is not null)
                    {
                        // Not awaited: while the connection is down a publish waits for it, and the consumer
                        // must not; the keepalive after the reconnect carries the count.
                        _acknowledged = consumed;
                        _ = SendQuietlyAsync(NatsWire.CtlAck);
                    }

                    return true;
                case NatsWire.FrameAccept:
                    _acceptSeen = true;
                    _serverResumes = Header(headers, NatsWire.Keepalive) is not null;
                    Volatile.Write(ref _controlSubject, Header(headers, NatsWire.CtlSubject) ?? _controlSubject);
                    if (int.TryParse(Header(headers, NatsWire.Window), NumberStyles.None, CultureInfo.InvariantCulture, out int window) && window > 0)
                    {
                        _ackEvery = Math.Max(1, window / 4);
                    }

                    break;
                case NatsWire.FrameEnd:
                    _completed = true;
                    return false;
                case NatsWire.FrameError:
                    _completed = true;
                    throw ToException(headers, msg.Data);
                default:
                    break; // heartbeat, or a frame type of a later minor version
            }
        }
    }

    /// <summary>
    /// Called by the plane every quarter keepalive interval while the stream is open: after this process's
    /// connection reopened, asks the server to send again what may have been lost (<c>resend</c>); otherwise
    /// sends an <c>ack</c> when nothing went to the server for the keepalive interval. Never blocks: the
    /// publish goes on in the background, bounded.
    /// </summary>
    public void Keepalive()
    {
        if (Volatile.Read(ref _closed) != 0 || Volatile.Read(ref _controlSubject) is null || !_watch.IsOpen)
        {
            return;
        }

        long reopenings = _watch.Reopenings;
        if (reopenings != Interlocked.Exchange(ref _reopeningsSeen, reopenings))
        {
            _ = SendQuietlyAsync(NatsWire.CtlResend);
        }
        else if (Stopwatch.GetElapsedTime(Volatile.Read(ref _lastControlSent)) >= _keepaliveInterval)
        {
            _ = SendQuietlyAsync(NatsWire.CtlAck);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Volatile.Write(ref _closed, 1);
        _timeout?.Dispose();
        if (_inbox is null)
        {
            return;
        }

        if (_gaveUp)
        {
            // The server is frozen or cut off: a cancel waits in NATS for its connection, if that survives.
            // Best effort, in the background: the caller has already been told.
            _ = CancelThenCloseAsync();
        }
        else if (_completed || !_sent)
        {
            await _inbox.DisposeAsync().ConfigureAwait(false);
        }
        else if (_controlSubject is not null)
        {
            await CancelAsync().ConfigureAwait(false);
            await _inbox.DisposeAsync().ConfigureAwait(false);
        }
        else
        {
            // Not accepted yet, so the server's control subject is unknown: wait for the accept in the
            // background (at most the accept timeout) and cancel then.
            _ = CancelWhenAcceptedAsync();
        }
    }

    private async Task CancelThenCloseAsync()
    {
        try
        {
            if (_controlSubject is not null)
            {
                using var timeout = new CancellationTokenSource(CancelSendTimeout);
                await SendControlAsync(NatsWire.CtlCancel, timeout.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException or ObjectDisposedException)
        {
            // The server's keepalive check cancels the request anyway.
        }
        finally
        {
            await _inbox!.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task CancelWhenAcceptedAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(_options.AcceptTimeout);
            while (_controlSubject is null && await _inbox!.Msgs.WaitToReadAsync(timeout.Token).ConfigureAwait(false))
            {
                while (_controlSubject is null && _inbox.Msgs.TryRead(out NatsMsg<byte[]> msg))
                {
                    if (msg.HasNoResponders)
                    {
                        return;
                    }

                    if (Header(msg.Headers, NatsWire.Frame) == NatsWire.FrameAccept)
                    {
                        _controlSubject = Header(msg.Headers, NatsWire.CtlSubject);
                    }
                    else if (Header(msg.Headers, NatsWire.Frame) is NatsWire.FrameEnd or NatsWire.FrameError)
                    {
                        return;
                    }
                }
            }

            await CancelAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException or ObjectDisposedException)
        {
        }
        finally
        {
            await _inbox!.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task CancelAsync()
    {
        if (_controlSubject is null)
        {
            return;
        }

        if (_connection.ConnectionState != NatsConnectionState.Open)
        {
            return; // it would wait for a reconnect; the server's keepalive check notices (README.md, "Liveness")
        }

        try
        {
            using var timeout = new CancellationTokenSource(CancelSendTimeout);
            await SendControlAsync(NatsWire.CtlCancel, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException or ObjectDisposedException)
        {
            // Best effort: the server also notices the client is gone (no keepalive).
        }
    }

    /// <summary>
    /// A frame arrived ahead of the one due (<paramref name="seq"/> &gt; the expected one): frames were lost in
    /// transit. A server that resumes (its accept said so, or no accept arrived yet to say otherwise) is asked to
    /// send again from the expected frame, once per keepalive interval, and the frames ahead are dropped until
    /// it does; within the idle timeout, or the stream ends with <see cref="RequestErrorKind.Interrupted"/>.
    /// </summary>
    private async ValueTask ResyncAsync(long seq)
    {
        long now = Stopwatch.GetTimestamp();
        bool canResync = _controlSubject is not null && (_serverResumes || !_acceptSeen);
        if (_resyncSince == 0)
        {
            _resyncSince = now;
        }

        if (!canResync || Stopwatch.GetElapsedTime(_resyncSince, now) > _options.IdleTimeout)
        {
            _completed = true;
            _gaveUp = _controlSubject is not null;
            string why = canResync ? $", and they were not sent again within {_options.IdleTimeout.TotalSeconds:0.###} s" : "";
            throw new RequestPlaneException(RequestErrorKind.Interrupted, "frame_gap", $"request {_requestId} to {_subject}: frame {seq} arrived where {_expectedSeq} was due (responses were lost{why})");
        }

        if (_lastResend == 0 || Stopwatch.GetElapsedTime(_lastResend, now) >= _keepaliveInterval)
        {
            _lastResend = now;
            try
            {
                using var timeout = new CancellationTokenSource(CancelSendTimeout);
                await SendControlAsync(NatsWire.CtlResend, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or NatsException)
            {
                // Asked again at the next frame ahead, or the keepalive asks after a reconnect.
            }
        }
    }

    private async Task SendQuietlyAsync(string kind)
    {
        try
        {
            using var timeout = new CancellationTokenSource(CancelSendTimeout);
            await SendControlAsync(kind, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException or ObjectDisposedException)
        {
            // The next keepalive tries again.
        }
    }

    // The reply-to is the inbox: if the server's control subscription is gone, NATS answers with a
    // "no responders" status there (see MoveNextAsync). Dyn-Seq tells the server which frames arrived.
    private ValueTask SendControlAsync(string kind, CancellationToken cancellationToken)
    {
        var headers = new NatsHeaders
        {
            [NatsWire.Version] = NatsWire.CurrentVersion,
            [NatsWire.Ctl] = kind,
            [NatsWire.RequestId] = _requestId,
            [NatsWire.Ack] = Interlocked.Read(ref _consumed).ToString(CultureInfo.InvariantCulture),
            [NatsWire.Seq] = Volatile.Read(ref _expectedSeq).ToString(CultureInfo.InvariantCulture),
        };
        Volatile.Write(ref _lastControlSent, Stopwatch.GetTimestamp());
        return _connection.PublishAsync(Volatile.Read(ref _controlSubject)!, headers: headers, replyTo: _inbox!.Subject, cancellationToken: cancellationToken);
    }

    /// <summary>
    /// The next frame. Silence is measured in <see cref="SilenceChecks"/> checks, each a quarter of the accept or
    /// idle timeout, reset by any frame: a check counts only when it runs, so a stall of this process (a GC
    /// pause, a starved thread pool, a descheduled CPU) counts as one check and not as the server's silence.
    /// With a single timer of the whole timeout, the timer fired the moment the process resumed, ahead of the
    /// heartbeat the server sent as it resumed too, and a live stream was reported unreachable. A check counts
    /// only while this process's own connection is open: while it is down, the server cannot be heard, and
    /// that lasts at most <see cref="NatsPlaneOptions.UnavailableTimeout"/> before <see cref="RequestErrorKind.Unavailable"/>.
    /// The deadline is absolute and ends the wait when it passes, stall or not.
    /// </summary>
    private async ValueTask<NatsMsg<byte[]>> ReadFrameAsync()
    {
        ChannelReader<NatsMsg<byte[]>> reader = _inbox!.Msgs;
        int silentChecks = 0;
        long downSince = 0;
        while (true)
        {
            if (reader.TryRead(out NatsMsg<byte[]> msg))
            {
                if (msg.HasNoResponders && _accepted && _serverResumes)
                {
                    // A control message found the server's control subscription gone: NATS restarting, or the
                    // server gone. Not a frame: the silence goes on counting, and its heartbeats (or their
                    // absence) decide.
                    continue;
                }

                return msg;
            }

            TimeSpan wait = (_accepted ? _options.IdleTimeout : _options.AcceptTimeout) / SilenceChecks;
            if (downSince != 0 && _unavailableTimeout / SilenceChecks < wait)
            {
                wait = _unavailableTimeout / SilenceChecks;
            }

            bool byDeadline = false;
            if (_deadline is { } deadline)
            {
                TimeSpan left = deadline - DateTimeOffset.UtcNow;
                if (left <= wait)
                {
                    wait = left > TimeSpan.Zero ? left : TimeSpan.Zero;
                    byDeadline = true;
                }
            }

            _timeout ??= CancellationTokenSource.CreateLinkedTokenSource(_cancellationToken);
            _timeout.CancelAfter(wait);
            bool more;
            try
            {
                more = await reader.WaitToReadAsync(_timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!_cancellationToken.IsCancellationRequested)
            {
                _timeout.Dispose();
                _timeout = null;
                if (byDeadline)
                {
                    // The server enforces the deadline itself as well.
                    throw RequestErrors.DeadlinePassed(_subject, _requestId);
                }

                if (!_watch.IsOpen)
                {
                    downSince = downSince == 0 ? Stopwatch.GetTimestamp() : downSince;
                    TimeSpan down = Stopwatch.GetElapsedTime(downSince);
                    if ((down > _watch.DownFor ? down : _watch.DownFor) < _unavailableTimeout)
                    {
                        continue;
                    }

                    GiveUp();
                    throw Unavailable();
                }

                downSince = 0;
                if (++silentChecks < SilenceChecks)
                {
                    continue;
                }

                GiveUp();
                throw _accepted
                    ? new RequestPlaneException(RequestErrorKind.Unreachable, "unreachable", $"the server of {_subject} sent nothing for {_options.IdleTimeout.TotalSeconds:0.###} s (request {_requestId})")
                    : new RequestPlaneException(RequestErrorKind.Unreachable, "not_accepted", $"no server accepted request {_requestId} to {_subject} within {_options.AcceptTimeout.TotalSeconds:0.###} s");
            }

            if (!_timeout.TryReset())
            {
                _timeout.Dispose();
                _timeout = null;
            }

            if (!more)
            {
                _completed = true;
                throw new RequestPlaneException(RequestErrorKind.Transport, "connection_closed", $"request {_requestId} to {_subject}: the NATS connection was closed");
            }
        }
    }

    /// <summary>Gives up on a server that cannot be heard: it is sent a cancel at disposal, in the background.</summary>
    private void GiveUp()
    {
        _completed = true;
        _gaveUp = _controlSubject is not null;
    }

    private RequestPlaneException Unavailable(Exception? inner = null)
    {
        RequestPlaneHealth health = _watch.Health;
        string why = health.IsConnected ? "the NATS connection was lost" : health.Reason!;
        return new RequestPlaneException(
            RequestErrorKind.Unavailable, "request_plane_unavailable",
            $"request {_requestId} to {_subject}: the request plane is unavailable ({why}; waited {_unavailableTimeout.TotalSeconds:0.###} s)", inner);
    }

    private RequestPlaneException ToException(NatsHeaders? headers, byte[]? body)
    {
        RequestErrorKind kind = Enum.TryParse(Header(headers, NatsWire.ErrorKind), ignoreCase: false, out RequestErrorKind k) && Enum.IsDefined(k) ? k : RequestErrorKind.Remote;
        string code = Header(headers, NatsWire.ErrorCode) ?? "internal";
        string message = body is { Length: > 0 } ? System.Text.Encoding.UTF8.GetString(body) : $"request {_requestId} to {_subject} failed ({code})";
        return new RequestPlaneException(kind, code, message);
    }

    private RequestPlaneException TooLarge(int length, int maxPayload, Exception? inner) =>
        new(RequestErrorKind.Transport, "payload_too_large", $"request {_requestId} to {_subject} is {length} bytes, over the NATS server's max_payload of {maxPayload} bytes", inner);

    private static string? Header(NatsHeaders? headers, string name) =>
        headers is not null && headers.TryGetValue(name, out Microsoft.Extensions.Primitives.StringValues values) && values.Count > 0 ? values[^1] : null;
}

using System.Globalization;
using System.Threading.Channels;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// The client side of one request on <see cref="NatsRequestPlane"/>: publishes it with a fresh inbox, reads
/// frames in sequence, acknowledges data as the consumer takes it, and enforces the accept, idle and
/// deadline timeouts. Disposing it before the end cancels the request on the server. Wire contract: README.md.
/// </summary>
internal sealed class NatsResponseStream : IAsyncDisposable
{
    private static readonly TimeSpan CancelSendTimeout = TimeSpan.FromSeconds(2);

    /// <summary>Silent checks that make a server unreachable (see <see cref="ReadFrameAsync"/>).</summary>
    private const int SilenceChecks = 4;

    private readonly NatsConnection _connection;
    private readonly string _subject;
    private readonly RequestOptions _options;
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
    private bool _sent;
    private bool _accepted;
    private bool _completed;

    public NatsResponseStream(NatsConnection connection, string subject, RequestOptions options, CancellationToken cancellationToken)
    {
        _connection = connection;
        _subject = subject;
        _options = options;
        _requestId = options.RequestId.Length > 0 ? options.RequestId : Guid.NewGuid().ToString("N");
        _cancellationToken = cancellationToken;
    }

    public ReadOnlyMemory<byte> Current { get; private set; }

    public async ValueTask StartAsync(ReadOnlyMemory<byte> payload)
    {
        var headers = new NatsHeaders
        {
            [NatsWire.Version] = NatsWire.CurrentVersion,
            [NatsWire.RequestId] = _requestId,
        };
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

        try
        {
            string inbox = _connection.NewInbox();
            _inbox = await _connection.SubscribeCoreAsync<byte[]>(inbox, cancellationToken: _cancellationToken).ConfigureAwait(false);
            await _connection.PublishAsync(_subject, payload, headers, replyTo: inbox, cancellationToken: _cancellationToken).ConfigureAwait(false);
            _sent = true;
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

            if (seq != _expectedSeq)
            {
                _completed = true;
                throw new RequestPlaneException(RequestErrorKind.Transport, "frame_gap", $"request {_requestId} to {_subject}: frame {seq} arrived where {_expectedSeq} was due (responses were lost)");
            }

            _expectedSeq++;
            _accepted = true;
            switch (frame)
            {
                case NatsWire.FrameData:
                    Current = msg.Data ?? [];
                    _consumed++;
                    if (_consumed - _acknowledged >= _ackEvery && _controlSubject is not null)
                    {
                        _acknowledged = _consumed;
                        await SendControlAsync(NatsWire.CtlAck, _consumed, _cancellationToken).ConfigureAwait(false);
                    }

                    return true;
                case NatsWire.FrameAccept:
                    _controlSubject = Header(headers, NatsWire.CtlSubject);
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

    public async ValueTask DisposeAsync()
    {
        _timeout?.Dispose();
        if (_inbox is null)
        {
            return;
        }

        if (_completed || !_sent)
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
            return; // it would wait for a reconnect; the server notices on its own (README.md, "Liveness")
        }

        try
        {
            using var timeout = new CancellationTokenSource(CancelSendTimeout);
            await SendControlAsync(NatsWire.CtlCancel, _consumed, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or NatsException or ObjectDisposedException)
        {
            // Best effort: the server also notices the inbox is gone (its next frame draws "no responders").
        }
    }

    // The reply-to is the inbox: if the server's control subscription is gone, NATS answers with a
    // "no responders" status there, and the next read reports the server unreachable.
    private ValueTask SendControlAsync(string kind, long consumed, CancellationToken cancellationToken)
    {
        var headers = new NatsHeaders
        {
            [NatsWire.Version] = NatsWire.CurrentVersion,
            [NatsWire.Ctl] = kind,
            [NatsWire.RequestId] = _requestId,
            [NatsWire.Ack] = consumed.ToString(CultureInfo.InvariantCulture),
        };
        return _connection.PublishAsync(_controlSubject!, headers: headers, replyTo: _inbox!.Subject, cancellationToken: cancellationToken);
    }

    /// <summary>
    /// The next frame. Silence is measured in <see cref="SilenceChecks"/> checks, each a quarter of the accept or
    /// idle timeout, reset by any frame: a check counts only when it runs, so a stall of this process (a GC
    /// pause, a starved thread pool, a descheduled CPU) counts as one check and not as the server's silence.
    /// With a single timer of the whole timeout, the timer fired the moment the process resumed, ahead of the
    /// heartbeat the server sent as it resumed too, and a live stream was reported unreachable.
    /// The deadline is absolute and ends the wait when it passes, stall or not.
    /// </summary>
    private async ValueTask<NatsMsg<byte[]>> ReadFrameAsync()
    {
        ChannelReader<NatsMsg<byte[]>> reader = _inbox!.Msgs;
        int silentChecks = 0;
        while (true)
        {
            if (reader.TryRead(out NatsMsg<byte[]> msg))
            {
                return msg;
            }

            TimeSpan wait = (_accepted ? _options.IdleTimeout : _options.AcceptTimeout) / SilenceChecks;
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
                if (!byDeadline && ++silentChecks < SilenceChecks)
                {
                    continue;
                }

                // An unreachable server is not sent a cancel; a deadline the server enforces itself as well.
                _completed = !byDeadline;
                throw byDeadline
                    ? RequestErrors.DeadlinePassed(_subject, _requestId)
                    : _accepted
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

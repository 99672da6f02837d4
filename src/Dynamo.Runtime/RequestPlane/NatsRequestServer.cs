using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// Serves one subject for <see cref="NatsRequestPlane.ServeAsync"/>: takes requests (optionally in a queue
/// group), runs each handler in its own task, and reads this server's control subject
/// <c>_DYN_CTL.{server}.*</c> for acknowledgements, keepalives, resends and cancellations. Wire contract: README.md.
/// </summary>
internal sealed partial class NatsRequestServer : IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(2);

    private static readonly TimeSpan LongestKeepalive = TimeSpan.FromMinutes(1);

    private readonly NatsConnection _connection;
    private readonly NatsConnectionWatch _watch;
    private readonly string _subject;
    private readonly RequestHandler _handler;
    private readonly NatsPlaneOptions _options;
    private readonly ILogger _logger;
    private readonly string _controlPrefix;
    private readonly Action<NatsRequestServer>? _onDisposed;
    private readonly ConcurrentDictionary<long, NatsServedRequest> _active = new();
    private readonly ConcurrentDictionary<long, NatsServedRequest> _lingering = new();
    private readonly CancellationTokenSource _stopping = new();
    private INatsSub<byte[]>? _requests;
    private INatsSub<byte[]>? _control;
    private Task _requestLoop = Task.CompletedTask;
    private Task _controlLoop = Task.CompletedTask;
    private Task _heartbeatLoop = Task.CompletedTask;
    private long _nextStream;
    private long _peakUnacknowledged;
    private int _disposed;

    private NatsRequestServer(NatsConnection connection, NatsConnectionWatch watch, string subject, RequestHandler handler, NatsPlaneOptions options, Action<NatsRequestServer>? onDisposed)
    {
        _connection = connection;
        _watch = watch;
        _subject = subject;
        _handler = handler;
        _options = options;
        _logger = options.Logger ?? NullLogger.Instance;
        _onDisposed = onDisposed;
        _controlPrefix = $"{NatsWire.CtlPrefix}.{Guid.NewGuid():N}";
    }

    /// <summary>Requests being served now.</summary>
    internal int ActiveCount => _active.Count;

    /// <summary>Finished requests whose last frames are kept until the client is done with them (a test hook).</summary>
    internal int LingeringCount => _lingering.Count;

    /// <summary>The most data frames any request had sent and not yet had acknowledged (a test hook for back-pressure).</summary>
    internal long PeakUnacknowledged => Volatile.Read(ref _peakUnacknowledged);

    public static async Task<NatsRequestServer> StartAsync(
        NatsConnection connection, NatsConnectionWatch watch, string subject, RequestHandler handler, string? queueGroup, NatsPlaneOptions options,
        Action<NatsRequestServer>? onDisposed, CancellationToken cancellationToken)
    {
        var server = new NatsRequestServer(connection, watch, subject, handler, options, onDisposed);
        try
        {
            // The control subscription first: a request may be accepted the moment the subject is subscribed.
            server._control = await connection.SubscribeCoreAsync<byte[]>(server._controlPrefix + ".*", cancellationToken: cancellationToken).ConfigureAwait(false);
            server._requests = await connection.SubscribeCoreAsync<byte[]>(subject, queueGroup, cancellationToken: cancellationToken).ConfigureAwait(false);

            // A PING answered means the server has processed the SUBs: requests sent from now on reach us.
            await connection.PingAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        watch.Reopened += server.OnReopened;
        server._controlLoop = Task.Run(() => server.ReadControlAsync(server._control), CancellationToken.None);
        server._requestLoop = Task.Run(() => server.ReadRequestsAsync(server._requests), CancellationToken.None);
        server._heartbeatLoop = Task.Run(server.SendHeartbeatsAsync, CancellationToken.None);
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // No new requests, then cancel the running ones (they send a "server_stopped" error) and wait for them.
        // A PING answered means the NATS server has processed the UNSUB: from then on a request gets "no
        // responders" at once, as from an in-process server, instead of vanishing until its accept timeout.
        await UnsubscribeAsync(_requests).ConfigureAwait(false);
        await PingAsync().ConfigureAwait(false);

        await _requestLoop.ConfigureAwait(false);
        foreach (NatsServedRequest request in _active.Values)
        {
            request.Cancel(NatsCancelReason.Shutdown);
        }

        long start = Stopwatch.GetTimestamp();
        while (!_active.IsEmpty && Stopwatch.GetElapsedTime(start) < DrainTimeout)
        {
            await Task.Delay(10).ConfigureAwait(false);
        }

        _watch.Reopened -= OnReopened;
        await _stopping.CancelAsync().ConfigureAwait(false);
        await UnsubscribeAsync(_control).ConfigureAwait(false);

        await _controlLoop.ConfigureAwait(false);
        await _heartbeatLoop.ConfigureAwait(false);
        foreach (long stream in _lingering.Keys)
        {
            DropLingering(stream);
        }

        _stopping.Dispose();
        _onDisposed?.Invoke(this);
    }

    private async ValueTask UnsubscribeAsync(INatsSub<byte[]>? subscription)
    {
        try
        {
            if (subscription is not null)
            {
                await subscription.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or NatsException)
        {
            // The connection is already gone, and the subscription with it.
        }
    }

    private async Task PingAsync()
    {
        if (_connection.ConnectionState != NatsConnectionState.Open)
        {
            return; // it would wait for a reconnect, which restores no unsubscribed subject anyway
        }

        using var timeout = new CancellationTokenSource(PingTimeout);
        try
        {
            await _connection.PingAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or NatsException)
        {
        }
    }

    private async Task ReadRequestsAsync(INatsSub<byte[]> subscription)
    {
        try
        {
            await foreach (NatsMsg<byte[]> msg in subscription.Msgs.ReadAllAsync().ConfigureAwait(false))
            {
                Accept(msg);
            }
        }
        catch (Exception e)
        {
            Log.LoopFailed(_logger, _subject, e);
        }
    }

    private void Accept(NatsMsg<byte[]> msg)
    {
        if (string.IsNullOrEmpty(msg.ReplyTo))
        {
            Log.DroppedNoReply(_logger, _subject);
            return;
        }

        NatsHeaders? headers = msg.Headers;
        string requestId = Header(headers, NatsWire.RequestId) ?? "";
        string? version = Header(headers, NatsWire.Version);
        if (!NatsWire.IsSupportedVersion(version))
        {
            string message = version is null
                ? $"request on {_subject} has no {NatsWire.Version} header; this server speaks version {NatsWire.CurrentVersion}"
                : $"request on {_subject} has {NatsWire.Version} '{version}'; this server speaks version {NatsWire.CurrentVersion}";
            _ = RejectAsync(msg.ReplyTo, requestId, "unsupported_version", message);
            return;
        }

        DateTimeOffset? deadline = null;
        string? deadlineText = Header(headers, NatsWire.Deadline);
        if (deadlineText is not null)
        {
            if (!long.TryParse(deadlineText, NumberStyles.Integer, CultureInfo.InvariantCulture, out long unixMs))
            {
                _ = RejectAsync(msg.ReplyTo, requestId, "invalid_request", $"{NatsWire.Deadline} '{deadlineText}' is not a unix time in milliseconds");
                return;
            }

            deadline = DateTimeOffset.FromUnixTimeMilliseconds(unixMs);
        }

        TimeSpan? keepalive = null;
        if (long.TryParse(Header(headers, NatsWire.Keepalive), NumberStyles.None, CultureInfo.InvariantCulture, out long keepaliveMs)
            && keepaliveMs > 0 && keepaliveMs <= LongestKeepalive.TotalMilliseconds)
        {
            keepalive = TimeSpan.FromMilliseconds(keepaliveMs);
        }

        long stream = Interlocked.Increment(ref _nextStream);
        var request = new NatsServedRequest(stream, msg.ReplyTo, $"{_controlPrefix}.{stream}", requestId, deadline, msg.Data ?? [], keepalive)
        {
            TraceParent = TraceContext.Incoming(Header(headers, TraceContext.TraceParent), Header(headers, TraceContext.TraceState)),
        };
        _active[stream] = request;
        _ = Task.Run(() => ServeAsync(request), CancellationToken.None);
    }

    private async Task RejectAsync(string inbox, string requestId, string code, string message)
    {
        Log.Rejected(_logger, _subject, requestId, message);
        using var request = new NatsServedRequest(0, inbox, $"{_controlPrefix}.0", requestId, null, []);
        using var timeout = new CancellationTokenSource(DrainTimeout);
        try
        {
            await request.SendErrorAsync(_connection, RequestErrorKind.Remote, code, message, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.SendFailed(_logger, _subject, requestId, e);
        }
    }

    private async Task ServeAsync(NatsServedRequest request)
    {
        CancellationToken token = request.Token;
        try
        {
            await request.SendAcceptAsync(_connection, _options.ResponseWindow, token).ConfigureAwait(false);
            if (request.Deadline is { } deadline)
            {
                TimeSpan left = deadline - DateTimeOffset.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    await FinishWithErrorAsync(request, RequestErrorKind.DeadlineExceeded, "deadline_exceeded", "the request's deadline had passed when it arrived").ConfigureAwait(false);
                    return;
                }

                request.CancelAt(left);
            }

            var context = new RequestContext(request.RequestId, request.Deadline) { TraceParent = request.TraceParent };
            IAsyncEnumerator<ReadOnlyMemory<byte>> responses = _handler(context, request.Payload, token).GetAsyncEnumerator(token);
            try
            {
                while (await responses.MoveNextAsync().ConfigureAwait(false))
                {
                    await request.WaitForWindowAsync(_options.ResponseWindow, _options.AckTimeout).ConfigureAwait(false);
                    await request.SendDataAsync(_connection, responses.Current, token).ConfigureAwait(false);
                    UpdatePeak(request.Unacknowledged);
                }
            }
            finally
            {
                await responses.DisposeAsync().ConfigureAwait(false);
            }

            await request.SendEndAsync(_connection, token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            switch (request.Reason)
            {
                case NatsCancelReason.None:
                    await FinishWithErrorAsync(request, RequestErrorKind.DeadlineExceeded, "deadline_exceeded", "the request's deadline passed").ConfigureAwait(false);
                    break;
                case NatsCancelReason.Shutdown:
                    await FinishWithErrorAsync(request, RequestErrors.ServerStopped(_subject)).ConfigureAwait(false);
                    break;
                case NatsCancelReason.AckTimeout:
                    // The client may only be slow: it reads this after the responses it has not taken yet.
                    await FinishWithErrorAsync(request, RequestErrors.AckTimeout(_subject, request.RequestId, _options.AckTimeout, _options.ResponseWindow)).ConfigureAwait(false);
                    break;
                case NatsCancelReason.ClientSilent:
                    break; // logged by the check that cancelled it
                default:
                    Log.Cancelled(_logger, _subject, request.RequestId, request.Reason);
                    break;
            }
        }
        catch (EndpointException e)
        {
            await FinishWithErrorAsync(request, RequestErrorKind.Remote, e.Code, e.Message).ConfigureAwait(false);
        }
        catch (NatsPayloadTooLargeException e)
        {
            await FinishWithErrorAsync(request, RequestErrorKind.Transport, "payload_too_large", $"a response was larger than the NATS server's max_payload: {e.Message}").ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(_logger, _subject, request.RequestId, e);
            await FinishWithErrorAsync(request, RequestErrorKind.Remote, "internal", e.Message).ConfigureAwait(false);
        }
        finally
        {
            // A client with keepalives may still need the last frames (lost in a NATS restart): they are kept
            // until it reports them received or stays silent for the keepalive check.
            if (request.KeepaliveInterval is not null && request.FinalSent && !request.AllConfirmed && Volatile.Read(ref _disposed) == 0)
            {
                _lingering[request.Stream] = request;
                _active.TryRemove(request.Stream, out _);
            }
            else
            {
                _active.TryRemove(request.Stream, out _);
                request.Dispose();
            }
        }
    }

    private void DropLingering(long stream)
    {
        if (_lingering.TryRemove(stream, out NatsServedRequest? request))
        {
            request.Dispose();
        }
    }

    /// <summary>This server's connection opened again: frames sent meanwhile may be lost, so hold them until each client is heard from.</summary>
    private void OnReopened()
    {
        foreach (NatsServedRequest request in _active.Values.Concat(_lingering.Values))
        {
            request.Hold();
        }
    }

    private Task FinishWithErrorAsync(NatsServedRequest request, RequestPlaneException error) =>
        FinishWithErrorAsync(request, error.Kind, error.Code, error.Message);

    private async Task FinishWithErrorAsync(NatsServedRequest request, RequestErrorKind kind, string code, string message)
    {
        using var timeout = new CancellationTokenSource(DrainTimeout);
        try
        {
            await request.SendErrorAsync(_connection, kind, code, message, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.SendFailed(_logger, _subject, request.RequestId, e);
        }
    }

    private async Task ReadControlAsync(INatsSub<byte[]> subscription)
    {
        try
        {
            await foreach (NatsMsg<byte[]> msg in subscription.Msgs.ReadAllAsync().ConfigureAwait(false))
            {
                int dot = msg.Subject.LastIndexOf('.');
                if (!long.TryParse(msg.Subject.AsSpan(dot + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long stream))
                {
                    continue;
                }

                bool lingering = false;
                if (!_active.TryGetValue(stream, out NatsServedRequest? request))
                {
                    if (!_lingering.TryGetValue(stream, out request))
                    {
                        continue;
                    }

                    lingering = true;
                }

                if (msg.HasNoResponders)
                {
                    // A client with keepalives may only be reconnecting (NATS restarted): hold the frames
                    // until it is heard from; the keepalive check cancels it if it is not.
                    if (!request.Hold())
                    {
                        request.Cancel(NatsCancelReason.ClientGone);
                    }

                    continue;
                }

                bool wasHeld = request.Held;
                long? received = long.TryParse(Header(msg.Headers, NatsWire.Seq), NumberStyles.None, CultureInfo.InvariantCulture, out long seq) ? seq : null;
                request.OnControl(received);
                string? kind = Header(msg.Headers, NatsWire.Ctl);
                if (long.TryParse(Header(msg.Headers, NatsWire.Ack), NumberStyles.None, CultureInfo.InvariantCulture, out long consumed) && kind != NatsWire.CtlCancel)
                {
                    request.OnAck(consumed);
                }

                if (kind == NatsWire.CtlCancel)
                {
                    request.Cancel(NatsCancelReason.ClientCancelled);
                    if (lingering)
                    {
                        DropLingering(stream);
                    }
                }
                else if (request.KeepaliveInterval is not null && received is { } from && (wasHeld || kind == NatsWire.CtlResend))
                {
                    // The client is back (or saw a gap): send it what it may have missed, then go on.
                    _ = ResendAsync(request, from);
                }
                else if (lingering && request.AllConfirmed)
                {
                    DropLingering(stream);
                }
            }
        }
        catch (Exception e)
        {
            Log.LoopFailed(_logger, _subject, e);
        }
    }

    private async Task ResendAsync(NatsServedRequest request, long from)
    {
        using var timeout = new CancellationTokenSource(DrainTimeout);
        try
        {
            int sent = await request.ResendAsync(_connection, from, timeout.Token).ConfigureAwait(false);
            if (sent > 0)
            {
                Log.Resent(_logger, _subject, request.RequestId, sent, from);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or NatsException)
        {
            // Still held: the client's next control message asks again.
        }
    }

    // Each tick: the keepalive check of every client that sends keepalives, then heartbeats where due.
    private async Task SendHeartbeatsAsync()
    {
        TimeSpan interval = _options.HeartbeatInterval;
        using var timer = new PeriodicTimer(interval / 4);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                bool open = _watch.IsOpen;
                foreach (NatsServedRequest request in _active.Values)
                {
                    if (request.ClientSilent(open))
                    {
                        Log.ClientSilent(_logger, _subject, request.RequestId, (request.KeepaliveInterval!.Value * NatsServedRequest.ClientSilenceChecks).TotalSeconds);
                        request.Cancel(NatsCancelReason.ClientSilent);
                        continue;
                    }

                    if (!open)
                    {
                        continue; // a publish would wait for the reconnect, and hold up every other request
                    }

                    try
                    {
                        await request.SendHeartbeatIfIdleAsync(_connection, interval, request.Token).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or NatsException)
                    {
                        // The request is ending or the link is down; its own loop reports that.
                    }
                }

                foreach ((long stream, NatsServedRequest request) in _lingering)
                {
                    if (request.ClientSilent(open))
                    {
                        DropLingering(stream);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void UpdatePeak(long unacknowledged)
    {
        long peak = Volatile.Read(ref _peakUnacknowledged);
        while (unacknowledged > peak)
        {
            long was = Interlocked.CompareExchange(ref _peakUnacknowledged, unacknowledged, peak);
            if (was == peak)
            {
                return;
            }

            peak = was;
        }
    }

    private static string? Header(NatsHeaders? headers, string name) =>
        headers is not null && headers.TryGetValue(name, out Microsoft.Extensions.Primitives.StringValues values) && values.Count > 0 ? values[^1] : null;

    private static partial class Log
    {
        [LoggerMessage(EventId = 2101, Level = LogLevel.Warning, Message = "Request on {Subject} dropped: it has no reply subject")]
        public static partial void DroppedNoReply(ILogger logger, string subject);

        [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "Request {RequestId} on {Subject} rejected: {Reason}")]
        public static partial void Rejected(ILogger logger, string subject, string requestId, string reason);

        [LoggerMessage(EventId = 2103, Level = LogLevel.Error, Message = "Handler for {Subject} failed on request {RequestId}")]
        public static partial void HandlerFailed(ILogger logger, string subject, string requestId, Exception exception);

        [LoggerMessage(EventId = 2104, Level = LogLevel.Debug, Message = "Request {RequestId} on {Subject} cancelled: {Reason}")]
        public static partial void Cancelled(ILogger logger, string subject, string requestId, NatsCancelReason reason);

        [LoggerMessage(EventId = 2105, Level = LogLevel.Warning, Message = "Could not send the last frame of request {RequestId} on {Subject}")]
        public static partial void SendFailed(ILogger logger, string subject, string requestId, Exception exception);

        [LoggerMessage(EventId = 2106, Level = LogLevel.Error, Message = "Subscription loop of {Subject} failed")]
        public static partial void LoopFailed(ILogger logger, string subject, Exception exception);

        [LoggerMessage(EventId = 2107, Level = LogLevel.Warning, Message = "Request {RequestId} on {Subject} cancelled: its client sent no keepalive for {Seconds} s (frozen, cut off or gone)")]
        public static partial void ClientSilent(ILogger logger, string subject, string requestId, double seconds);

        [LoggerMessage(EventId = 2108, Level = LogLevel.Information, Message = "Request {RequestId} on {Subject}: sent {Count} frames again from {Seq} (lost in a NATS reconnect)")]
        public static partial void Resent(ILogger logger, string subject, string requestId, int count, long seq);
    }
}

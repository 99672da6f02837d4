using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// The in-process twin of the NATS request plane (single-machine mode), held to the same contract (README.md,
/// "Contract"): each request runs its handler on the thread pool and the responses flow through a bounded
/// channel of <see cref="InProcessRequestPlaneOptions.ResponseWindow"/>, so the consumer's pace bounds the
/// handler; a full window not taken from for <see cref="InProcessRequestPlaneOptions.AckTimeout"/> ends the
/// request; cancellation, abandonment, the deadline and a stopped server reach the handler's token; payloads
/// over <see cref="InProcessRequestPlaneOptions.MaxPayload"/> fail as they would over NATS. Payloads are
/// passed by reference: neither side may change a buffer after handing it over.
/// </summary>
public sealed class InProcessRequestPlane : IRequestPlane
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);

    private readonly InProcessRequestPlaneOptions _options;
    private readonly ConcurrentDictionary<string, Subject> _subjects = new(StringComparer.Ordinal);
    private int _disposed;

    /// <summary>A plane with <see cref="InProcessRequestPlaneOptions.Default"/>.</summary>
    public InProcessRequestPlane()
        : this(InProcessRequestPlaneOptions.Default)
    {
    }

    /// <summary>A plane with <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentException">A setting is out of range.</exception>
    public InProcessRequestPlane(InProcessRequestPlaneOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    private enum StopReason
    {
        None = 0,
        ClientGone = 1,
        Deadline = 2,
        ServerStopped = 3,
        AckTimeout = 4,
        Failed = 5,
    }

    /// <inheritdoc/>
    public string Name => "inproc";

    /// <inheritdoc/>
    public RequestPlaneHealth Health => RequestPlaneHealth.Connected;

    /// <inheritdoc/>
    /// <exception cref="InvalidOperationException">
    /// <paramref name="subject"/> is already served outside <paramref name="queueGroup"/>: NATS would hand each
    /// request to several servers, whose responses would interleave into one broken stream.
    /// </exception>
    public Task<IAsyncDisposable> ServeAsync(string subject, RequestHandler handler, string? queueGroup = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(subject);
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var server = new Server(this, subject, queueGroup, handler);
        _subjects.GetOrAdd(subject, static s => new Subject(s)).Add(server);
        return Task.FromResult<IAsyncDisposable>(server);
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ReadOnlyMemory<byte>> RequestStreamAsync(string subject, ReadOnlyMemory<byte> payload, RequestOptions options, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(subject);
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        string requestId = options.RequestId.Length > 0 ? options.RequestId : Guid.NewGuid().ToString("N");
        if (payload.Length > _options.MaxPayload)
        {
            throw TooLarge($"request {requestId} to {subject} is {payload.Length} bytes", null);
        }

        Server server = (_subjects.TryGetValue(subject, out Subject? s) ? s.Next() : null)
            ?? throw RequestErrors.NoResponders(subject, requestId);
        var context = new RequestContext(requestId, options.Deadline is { } d ? DateTimeOffset.UtcNow + d : null) { TraceParent = Activity.Current?.Context ?? default };
        var call = new Call(subject, context, options.Deadline, _options.ResponseWindow);
        server.Start(call, payload);

        // One token for every wait of this request (not a linked source per wait): the caller's, and the deadline's.
        using CancellationTokenSource? linked = options.Deadline is null ? null : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, call.DeadlinePassed);
        CancellationToken wait = linked?.Token ?? cancellationToken;
        try
        {
            while (await call.WaitToReadAsync(wait, cancellationToken).ConfigureAwait(false))
            {
                while (call.Responses.Reader.TryRead(out ReadOnlyMemory<byte> item))
                {
                    yield return item;
                }
            }
        }
        finally
        {
            // Cancels a handler still running and returns at once, as the NATS client does: a handler that
            // ignores its token does not hold up the caller.
            call.Cancel(StopReason.ClientGone);
            call.Release();
        }
    }

    /// <summary>Stops every server of this plane (in-flight requests end with <c>server_stopped</c>), waiting up to 5 s each for their handlers.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (Subject subject in _subjects.Values)
        {
            foreach (Server server in subject.Servers)
            {
                await server.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Stops every server of <paramref name="subject"/> without deregistering anything: what a killed process looks like.</summary>
    internal ValueTask DisposeSubjectForTestAsync(string subject)
    {
        if (_subjects.TryRemove(subject, out Subject? s))
        {
            foreach (Server server in s.Servers)
            {
                server.Stop();
            }
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Requests the serving handle <paramref name="serving"/> of this kind of plane is running now (a test hook).</summary>
    internal static int ActiveCount(IAsyncDisposable serving) =>
        serving is Server server ? server.ActiveCount : throw new ArgumentException("not an in-process serving handle", nameof(serving));

    private RequestPlaneException TooLarge(string what, Exception? inner) =>
        new(RequestErrorKind.Transport, "payload_too_large", $"{what}, over the in-process plane's max_payload of {_options.MaxPayload} bytes (the NATS server's default)", inner);

    private async Task RunAsync(Server server, Call call, ReadOnlyMemory<byte> payload)
    {
        CancellationToken token = call.Token;
        RequestContext context = call.Context;
        Exception? error = null;
        try
        {
            await foreach (ReadOnlyMemory<byte> item in server.Handler(context, payload, token).WithCancellation(token).ConfigureAwait(false))
            {
                if (item.Length > _options.MaxPayload)
                {
                    error = TooLarge($"a response of request {context.RequestId} to {call.Subject} is {item.Length} bytes", null);
                    call.Cancel(StopReason.Failed);
                    break;
                }

                if (!call.Responses.Writer.TryWrite(item))
                {
                    await WriteWhenTakenAsync(call, item).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            error = call.Reason switch
            {
                StopReason.Deadline => RequestErrors.DeadlinePassed(call.Subject, context.RequestId),
                StopReason.ServerStopped => RequestErrors.ServerStopped(call.Subject),
                StopReason.AckTimeout => RequestErrors.AckTimeout(call.Subject, context.RequestId, _options.AckTimeout, _options.ResponseWindow),
                _ => error, // the client went away (nobody reads any more), or the failure set above
            };
        }
        catch (EndpointException e)
        {
            error = new RequestPlaneException(RequestErrorKind.Remote, e.Code, e.Message);
        }
        catch (Exception e)
        {
            error = new RequestPlaneException(RequestErrorKind.Remote, "internal", e.Message);
        }
        finally
        {
            call.Responses.Writer.TryComplete(error);
            call.Release();
        }
    }

    /// <summary>Waits, at most the ack timeout, for the consumer to take a response; then cancels the request.</summary>
    private async Task WriteWhenTakenAsync(Call call, ReadOnlyMemory<byte> item)
    {
        ChannelWriter<ReadOnlyMemory<byte>> writer = call.Responses.Writer;
        try
        {
            while (!writer.TryWrite(item))
            {
                await writer.WaitToWriteAsync(call.Token).AsTask().WaitAsync(_options.AckTimeout, call.Token).ConfigureAwait(false);
            }
        }
        catch (TimeoutException)
        {
            call.Cancel(StopReason.AckTimeout);
            call.Token.ThrowIfCancellationRequested();
            throw;
        }
    }

    /// <summary>
    /// One request: its response channel and the handler's token, with the reason it was cancelled (the first
    /// wins). Owned by the consumer and the handler's run; disposed when both have released it.
    /// </summary>
    private sealed class Call
    {
        private readonly CancellationTokenSource _handler = new();
        private readonly CancellationTokenSource? _deadline;
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private CancellationTokenRegistration _onDeadline;
        private CancellationTokenRegistration _onStop;
        private int _reason;
        private int _owners = 2;

        public Call(string subject, RequestContext context, TimeSpan? deadline, int window)
        {
            Subject = subject;
            Context = context;
            Responses = Channel.CreateBounded<ReadOnlyMemory<byte>>(new BoundedChannelOptions(window)
            {
                SingleReader = true,
                SingleWriter = true,
                FullMode = BoundedChannelFullMode.Wait,
            });
            if (deadline is { } d)
            {
                _deadline = new CancellationTokenSource(d > TimeSpan.Zero ? d : TimeSpan.Zero);
                _onDeadline = _deadline.Token.UnsafeRegister(static c => ((Call)c!).Cancel(StopReason.Deadline), this);
            }
        }

        public string Subject { get; }

        public RequestContext Context { get; }

        public Channel<ReadOnlyMemory<byte>> Responses { get; }

        /// <summary>The handler's token.</summary>
        public CancellationToken Token => _handler.Token;

        /// <summary>Completed when the handler's run has ended.</summary>
        public Task Done => _done.Task;

        public StopReason Reason => (StopReason)Volatile.Read(ref _reason);

        public void StopWith(CancellationToken stopping) =>
            _onStop = stopping.UnsafeRegister(static c => ((Call)c!).Cancel(StopReason.ServerStopped), this);

        public void Cancel(StopReason reason)
        {
            if (_done.Task.IsCompleted)
            {
                return;
            }

            Interlocked.CompareExchange(ref _reason, (int)reason, (int)StopReason.None);
            try
            {
                _handler.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }

        /// <summary>The token the deadline cancels.</summary>
        public CancellationToken DeadlinePassed => _deadline?.Token ?? CancellationToken.None;

        /// <summary>
        /// Waits for a response with <paramref name="wait"/> (the caller's token, linked with the deadline when there
        /// is one): the deadline ends the wait with <see cref="RequestErrorKind.DeadlineExceeded"/>, stalled handler or not.
        /// </summary>
        public ValueTask<bool> WaitToReadAsync(CancellationToken wait, CancellationToken caller)
        {
            ValueTask<bool> pending = Responses.Reader.WaitToReadAsync(wait);
            return pending.IsCompletedSuccessfully ? pending : AwaitResponseAsync(pending, caller);
        }

        // Pooled: this runs once per response when the handler is slower than its consumer.
        [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
        private async ValueTask<bool> AwaitResponseAsync(ValueTask<bool> pending, CancellationToken caller)
        {
            try
            {
                return await pending.ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!caller.IsCancellationRequested && _deadline is { IsCancellationRequested: true })
            {
                throw RequestErrors.DeadlinePassed(Subject, Context.RequestId);
            }
        }

        /// <summary>Called once by each owner; the last one frees the timers.</summary>
        public void Release()
        {
            if (Interlocked.Decrement(ref _owners) == 1)
            {
                return;
            }

            _onDeadline.Dispose();
            _onStop.Dispose();
            _handler.Dispose();
            _deadline?.Dispose();
        }

        public void MarkDone() => _done.TrySetResult();
    }

    private sealed class Subject(string name)
    {
        private readonly Lock _lock = new();
        private Server[] _servers = [];
        private int _next;

        public Server[] Servers => Volatile.Read(ref _servers);

        public void Add(Server server)
        {
            lock (_lock)
            {
                if (_servers.Length > 0 && (server.QueueGroup is null || _servers[0].QueueGroup != server.QueueGroup))
                {
                    string existing = _servers[0].QueueGroup is { } g ? $"in queue group '{g}'" : "without a queue group";
                    throw new InvalidOperationException(
                        $"'{name}' is already served {existing}: several servers of one subject must share one queue group (NATS would give each request to all of them)");
                }

                _servers = [.. _servers, server];
            }
        }

        public void Remove(Server server)
        {
            lock (_lock)
            {
                _servers = _servers.Where(s => s != server).ToArray();
            }
        }

        public Server? Next()
        {
            Server[] servers = Volatile.Read(ref _servers);
            return servers.Length == 0 ? null : servers[(int)((uint)Interlocked.Increment(ref _next) % (uint)servers.Length)];
        }
    }

    private sealed class Server(InProcessRequestPlane plane, string subject, string? queueGroup, RequestHandler handler) : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stopping = new();
        private readonly ConcurrentDictionary<Call, byte> _active = new();
        private int _disposed;

        public RequestHandler Handler => handler;

        public string? QueueGroup => queueGroup;

        public int ActiveCount => _active.Count;

        public void Start(Call call, ReadOnlyMemory<byte> payload)
        {
            _active[call] = 0;
            call.StopWith(_stopping.Token);
            _ = Task.Run(
                async () =>
                {
                    try
                    {
                        await plane.RunAsync(this, call, payload).ConfigureAwait(false);
                    }
                    finally
                    {
                        _active.TryRemove(call, out _);
                        call.MarkDone();
                    }
                },
                CancellationToken.None);
        }

        /// <summary>No new requests; the running ones are cancelled and end with <c>server_stopped</c>.</summary>
        public void Stop()
        {
            if (plane._subjects.TryGetValue(subject, out Subject? s))
            {
                s.Remove(this);
            }

            _stopping.Cancel();
        }

        /// <summary><see cref="Stop"/>, then waits up to 5 s for the running handlers to end (as a NATS server does).</summary>
        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            Stop();
            Task drained = Task.WhenAll(_active.Keys.Select(c => c.Done));
            await drained.WaitAsync(DrainTimeout).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }
}

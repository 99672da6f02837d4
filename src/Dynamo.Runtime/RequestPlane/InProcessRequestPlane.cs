using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// The in-process twin of the NATS request plane (single-machine mode): a request runs its handler on
/// the thread pool and the responses flow through a bounded channel, so the same contract holds: the
/// consumer's pace bounds the handler (<see cref="Window"/> responses ahead at most), cancellation and
/// deadlines reach the handler's token, handler errors become <see cref="RequestPlaneException"/>.
/// Payloads are passed by reference: neither side may change a buffer after handing it over.
/// </summary>
public sealed class InProcessRequestPlane : IRequestPlane
{
    /// <summary>Responses a handler may run ahead of its consumer.</summary>
    public const int Window = 128;

    private readonly ConcurrentDictionary<string, Subject> _subjects = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public string Name => "inproc";

    /// <inheritdoc/>
    public Task<IAsyncDisposable> ServeAsync(string subject, RequestHandler handler, string? queueGroup = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(subject);
        ArgumentNullException.ThrowIfNull(handler);
        var server = new Server(this, subject, handler);
        _subjects.GetOrAdd(subject, _ => new Subject()).Add(server);
        return Task.FromResult<IAsyncDisposable>(server);
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ReadOnlyMemory<byte>> RequestStreamAsync(string subject, ReadOnlyMemory<byte> payload, RequestOptions options, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        Server server = _subjects.TryGetValue(subject, out Subject? s) ? s.Next() ?? throw NoResponders(subject) : throw NoResponders(subject);
        string requestId = options.RequestId.Length > 0 ? options.RequestId : Guid.NewGuid().ToString("N");
        DateTimeOffset? deadline = options.Deadline is { } d ? DateTimeOffset.UtcNow + d : null;
        var responses = Channel.CreateBounded<ReadOnlyMemory<byte>>(new BoundedChannelOptions(Window) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        using var work = CancellationTokenSource.CreateLinkedTokenSource(server.Stopping);
        using var deadlineTimer = new CancellationTokenSource();
        if (options.Deadline is { } span)
        {
            deadlineTimer.CancelAfter(span);
        }

        using CancellationTokenRegistration onDeadline = deadlineTimer.Token.Register(work.Cancel);
        Task run = Task.Run(() => RunAsync(server, new RequestContext(requestId, deadline), payload, responses.Writer, deadlineTimer.Token, work.Token), CancellationToken.None);
        try
        {
            while (await responses.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (responses.Reader.TryRead(out ReadOnlyMemory<byte> item))
                {
                    yield return item;
                }
            }
        }
        finally
        {
            await work.CancelAsync().ConfigureAwait(false);
            await run.ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        foreach (Subject subject in _subjects.Values)
        {
            subject.StopAll();
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Stops every server of <paramref name="subject"/> without deregistering anything: what a killed process looks like.</summary>
    internal ValueTask DisposeSubjectForTestAsync(string subject)
    {
        if (_subjects.TryRemove(subject, out Subject? s))
        {
            s.StopAll();
        }

        return ValueTask.CompletedTask;
    }

    private static RequestPlaneException NoResponders(string subject) =>
        new(RequestErrorKind.NoResponders, "no_responders", $"nothing serves '{subject}'");

    private static async Task RunAsync(Server server, RequestContext context, ReadOnlyMemory<byte> payload, ChannelWriter<ReadOnlyMemory<byte>> writer, CancellationToken deadline, CancellationToken cancellationToken)
    {
        Exception? error = null;
        try
        {
            await foreach (ReadOnlyMemory<byte> item in server.Handler(context, payload, cancellationToken).WithCancellation(cancellationToken).ConfigureAwait(false))
            {
                await writer.WriteAsync(item, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            error = new RequestPlaneException(RequestErrorKind.DeadlineExceeded, "deadline_exceeded", $"request {context.RequestId} passed its deadline");
        }
        catch (OperationCanceledException) when (server.Stopping.IsCancellationRequested)
        {
            error = new RequestPlaneException(RequestErrorKind.Unreachable, "instance_stopped", $"the instance serving '{server.SubjectName}' stopped during request {context.RequestId}");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The client went away: nobody reads the channel any more.
        }
        catch (EndpointException e)
        {
            error = new RequestPlaneException(RequestErrorKind.Remote, e.Code, e.Message);
        }
        catch (Exception e)
        {
            error = new RequestPlaneException(RequestErrorKind.Remote, "internal", e.Message);
        }

        writer.TryComplete(error);
    }

    private sealed class Subject
    {
        private readonly Lock _lock = new();
        private Server[] _servers = [];
        private int _next;

        public void Add(Server server)
        {
            lock (_lock)
            {
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

        public void StopAll()
        {
            foreach (Server server in Volatile.Read(ref _servers))
            {
                server.Stop();
            }
        }
    }

    private sealed class Server(InProcessRequestPlane plane, string subject, RequestHandler handler) : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stopping = new();

        public RequestHandler Handler => handler;

        public string SubjectName => subject;

        public CancellationToken Stopping => _stopping.Token;

        public void Stop()
        {
            if (plane._subjects.TryGetValue(subject, out Subject? s))
            {
                s.Remove(this);
            }

            _stopping.Cancel();
        }

        public ValueTask DisposeAsync()
        {
            Stop();
            return ValueTask.CompletedTask;
        }
    }
}

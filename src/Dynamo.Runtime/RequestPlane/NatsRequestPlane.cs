using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// The request plane between processes, on NATS core subjects: streamed responses with sequence numbers,
/// heartbeats and keepalives, a flow-control window, frames sent again after a NATS restart, cancellation and
/// deadlines. Wire contract (version 1): README.md. One <see cref="NatsConnection"/> per process, shared with
/// the event plane.
/// </summary>
internal sealed class NatsRequestPlane : IRequestPlane
{
    private readonly NatsPlaneOptions _options;
    private readonly bool _ownsConnection;
    private readonly NatsConnectionWatch _watch;
    private readonly ConcurrentDictionary<NatsRequestServer, byte> _servers = new();
    private readonly ConcurrentDictionary<NatsResponseStream, byte> _streams = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _keepaliveLoop;
    private int _disposed;

    /// <summary>
    /// Uses <paramref name="connection"/> (connected or not; NATS connects on first use). Disposing the plane
    /// disposes the connection only when <paramref name="ownsConnection"/>.
    /// </summary>
    public NatsRequestPlane(NatsConnection connection, NatsPlaneOptions? options = null, bool ownsConnection = false)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _options = options ?? NatsPlaneOptions.Default;
        _options.Validate();
        Connection = connection;
        _ownsConnection = ownsConnection;
        _watch = new NatsConnectionWatch(connection);
        _keepaliveLoop = Task.Run(SendKeepalivesAsync, CancellationToken.None);
    }

    /// <summary>"nats".</summary>
    public string Name => "nats";

    /// <summary>The NATS connection the plane uses.</summary>
    public NatsConnection Connection { get; }

    /// <inheritdoc />
    public RequestPlaneHealth Health => _watch.Health;

    /// <summary>Connects (see <see cref="NatsConnectionFactory.ConnectAsync"/>) and returns a plane that owns the connection.</summary>
    /// <exception cref="NatsUnavailableException">The server could not be reached within the connect timeout.</exception>
    public static async Task<NatsRequestPlane> ConnectAsync(NatsPlaneOptions options, CancellationToken cancellationToken = default)
    {
        NatsConnection connection = await NatsConnectionFactory.ConnectAsync(options, cancellationToken).ConfigureAwait(false);
        return new NatsRequestPlane(connection, options, ownsConnection: true);
    }

    /// <inheritdoc />
    public async Task<IAsyncDisposable> ServeAsync(string subject, RequestHandler handler, string? queueGroup = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(subject);
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        NatsRequestServer server = await NatsRequestServer.StartAsync(
            Connection, _watch, subject, handler, queueGroup, _options, s => _servers.TryRemove(s, out _), cancellationToken).ConfigureAwait(false);
        _servers[server] = 0;
        return server;
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<ReadOnlyMemory<byte>> RequestStreamAsync(
        string subject, ReadOnlyMemory<byte> payload, RequestOptions options, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(subject);
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var stream = new NatsResponseStream(Connection, _watch, subject, options, _options, cancellationToken);
        await using (stream.ConfigureAwait(false))
        {
            await stream.StartAsync(payload).ConfigureAwait(false);
            _streams[stream] = 0;
            try
            {
                while (await stream.MoveNextAsync().ConfigureAwait(false))
                {
                    yield return stream.Current;
                }
            }
            finally
            {
                _streams.TryRemove(stream, out _);
            }
        }
    }

    /// <summary>Stops every server this plane started (their in-flight handlers are cancelled), then the connection if owned.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (NatsRequestServer server in _servers.Keys)
        {
            await server.DisposeAsync().ConfigureAwait(false);
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _keepaliveLoop.ConfigureAwait(false);
        _stopping.Dispose();
        _watch.Dispose();
        if (_ownsConnection)
        {
            await Connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    // One loop for every open stream of this plane (not a timer per stream): each looks whether its keepalive is due.
    private async Task SendKeepalivesAsync()
    {
        using var timer = new PeriodicTimer(_options.HeartbeatInterval / 4);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                foreach (NatsResponseStream stream in _streams.Keys)
                {
                    stream.Keepalive();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}

using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using NATS.Client.Core;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// The request plane between processes, on NATS core subjects: streamed responses with sequence numbers,
/// heartbeats, a flow-control window, cancellation and deadlines. Wire contract (version 1): README.md.
/// One <see cref="NatsConnection"/> per process, shared with the event plane.
/// </summary>
internal sealed class NatsRequestPlane : IRequestPlane
{
    private readonly NatsPlaneOptions _options;
    private readonly bool _ownsConnection;
    private readonly ConcurrentDictionary<NatsRequestServer, byte> _servers = new();
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
    }

    /// <summary>"nats".</summary>
    public string Name => "nats";

    /// <summary>The NATS connection the plane uses.</summary>
    public NatsConnection Connection { get; }

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
            Connection, subject, handler, queueGroup, _options, s => _servers.TryRemove(s, out _), cancellationToken).ConfigureAwait(false);
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
        var stream = new NatsResponseStream(Connection, subject, options, cancellationToken);
        await using (stream.ConfigureAwait(false))
        {
            await stream.StartAsync(payload).ConfigureAwait(false);
            while (await stream.MoveNextAsync().ConfigureAwait(false))
            {
                yield return stream.Current;
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

        if (_ownsConnection)
        {
            await Connection.DisposeAsync().ConfigureAwait(false);
        }
    }
}

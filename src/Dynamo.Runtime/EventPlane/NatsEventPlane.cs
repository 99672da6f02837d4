using System.Collections.Concurrent;
using System.Threading.Channels;
using Dynamo.Runtime.RequestPlane;
using NATS.Client.Core;

namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// The event plane between processes: NATS core publish/subscribe (at most once, in order per publisher),
/// held to the contract of the folder's README. Each subscription buffers up to
/// <see cref="NatsPlaneOptions.EventBufferCapacity"/> messages and drops the oldest beyond that, counting them
/// in <see cref="IEventSubscription.Dropped"/>.
/// </summary>
internal sealed class NatsEventPlane : IEventPlane
{
    private readonly NatsPlaneOptions _options;
    private readonly bool _ownsConnection;
    private readonly ConcurrentDictionary<NatsEventSubscription, byte> _subscriptions = new();
    private int _disposed;

    /// <summary>
    /// Uses <paramref name="connection"/> (shared with the request plane). Disposing the plane disposes the
    /// connection only when <paramref name="ownsConnection"/>.
    /// </summary>
    public NatsEventPlane(NatsConnection connection, NatsPlaneOptions? options = null, bool ownsConnection = false)
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
    public static async Task<NatsEventPlane> ConnectAsync(NatsPlaneOptions options, CancellationToken cancellationToken = default)
    {
        NatsConnection connection = await NatsConnectionFactory.ConnectAsync(options, cancellationToken).ConfigureAwait(false);
        return new NatsEventPlane(connection, options, ownsConnection: true);
    }

    /// <inheritdoc />
    public async ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        SubjectPattern.ValidateSubject(subject, nameof(subject));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        int maxPayload = Connection.ServerInfo?.MaxPayload ?? 0;
        if (maxPayload > 0 && payload.Length > maxPayload)
        {
            throw TooLarge(subject, payload.Length, maxPayload, null);
        }

        try
        {
            await Connection.PublishAsync(subject, payload, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (NatsPayloadTooLargeException e)
        {
            throw TooLarge(subject, payload.Length, maxPayload, e);
        }
    }

    /// <inheritdoc />
    public async Task<IEventSubscription> SubscribeAsync(string subject, CancellationToken cancellationToken = default)
    {
        SubjectPattern.ValidatePattern(subject, nameof(subject));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var opts = new NatsSubOpts
        {
            ChannelOpts = new NatsSubChannelOpts { Capacity = _options.EventBufferCapacity, FullMode = BoundedChannelFullMode.DropOldest },
        };
        INatsSub<byte[]> sub = await Connection.SubscribeCoreAsync<byte[]>(subject, opts: opts, cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            // A PING answered means the server has processed the SUB: messages published from now on arrive.
            await Connection.PingAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await sub.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        var subscription = new NatsEventSubscription(Connection, sub, s => _subscriptions.TryRemove(s, out _));
        _subscriptions[subscription] = 0;
        return subscription;
    }

    /// <summary>Ends every subscription of this plane, then disposes the connection if owned.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (NatsEventSubscription subscription in _subscriptions.Keys)
        {
            await subscription.DisposeAsync().ConfigureAwait(false);
        }

        if (_ownsConnection)
        {
            await Connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static ArgumentException TooLarge(string subject, int length, int maxPayload, Exception? inner) =>
        new($"an event of {length} bytes on {subject} is over the NATS server's max_payload of {maxPayload} bytes", "payload", inner);
}

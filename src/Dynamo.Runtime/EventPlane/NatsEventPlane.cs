using System.Threading.Channels;
using Dynamo.Runtime.RequestPlane;
using NATS.Client.Core;

namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// The event plane between processes: NATS core publish/subscribe (at most once, in order per publisher).
/// Each subscription buffers up to <see cref="NatsPlaneOptions.EventBufferCapacity"/> messages and drops
/// the oldest beyond that, counting them in <see cref="IEventSubscription.Dropped"/>.
/// </summary>
internal sealed class NatsEventPlane : IEventPlane
{
    private readonly NatsPlaneOptions _options;
    private readonly bool _ownsConnection;

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
    public ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default) =>
        Connection.PublishAsync(subject, payload, cancellationToken: cancellationToken);

    /// <inheritdoc />
    public async Task<IEventSubscription> SubscribeAsync(string subject, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(subject);
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

        return new NatsEventSubscription(Connection, sub);
    }

    /// <summary>Disposes the connection if owned (subscriptions end with it).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_ownsConnection)
        {
            await Connection.DisposeAsync().ConfigureAwait(false);
        }
    }
}

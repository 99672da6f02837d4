using System.Runtime.CompilerServices;
using NATS.Client.Core;

namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// A NATS core subscription behind <see cref="IEventSubscription"/>. Its buffer is the NATS client's own
/// bounded channel (drop oldest); the client reports each drop through <see cref="NatsConnection.MessageDropped"/>,
/// which this counts for its own subscription (the count lags the drop by the client's event dispatch).
/// </summary>
internal sealed class NatsEventSubscription : IEventSubscription
{
    private readonly NatsConnection _connection;
    private readonly INatsSub<byte[]> _sub;
    private readonly Action<NatsEventSubscription>? _onDisposed;
    private long _dropped;
    private int _disposed;

    public NatsEventSubscription(NatsConnection connection, INatsSub<byte[]> sub, Action<NatsEventSubscription>? onDisposed = null)
    {
        _connection = connection;
        _sub = sub;
        _onDisposed = onDisposed;
        _connection.MessageDropped += OnMessageDroppedAsync;
    }

    public long Dropped => Volatile.Read(ref _dropped);

    public async IAsyncEnumerable<EventMessage> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await foreach (NatsMsg<byte[]> msg in _sub.Msgs.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            yield return new EventMessage(msg.Subject, msg.Data ?? []);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _connection.MessageDropped -= OnMessageDroppedAsync;
        _onDisposed?.Invoke(this);
        try
        {
            await _sub.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is ObjectDisposedException or NatsException)
        {
            // The connection is already gone, and the subscription with it.
        }
    }

    private ValueTask OnMessageDroppedAsync(object? sender, NatsMessageDroppedEventArgs args)
    {
        if (ReferenceEquals(args.Subscription, _sub))
        {
            Interlocked.Increment(ref _dropped);
        }

        return ValueTask.CompletedTask;
    }
}

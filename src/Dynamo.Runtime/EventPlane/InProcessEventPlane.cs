using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// The in-process twin of the NATS event plane: every subscription whose pattern matches gets the
/// message in its own bounded buffer (<see cref="BufferCapacity"/>; the oldest is dropped and counted
/// when a subscriber falls behind), in publish order.
/// </summary>
public sealed class InProcessEventPlane : IEventPlane
{
    /// <summary>Messages buffered per subscription before the oldest is dropped.</summary>
    public const int BufferCapacity = 65536;

    private readonly Lock _lock = new();
    private Subscription[] _subscriptions = [];

    /// <inheritdoc/>
    public string Name => "inproc";

    /// <inheritdoc/>
    public ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(subject);
        var message = new EventMessage(subject, payload.ToArray());
        lock (_lock)
        {
            // Under the lock so that concurrent publishers reach every subscriber in the same order.
            foreach (Subscription s in _subscriptions)
            {
                if (SubjectPattern.Matches(s.Pattern, subject))
                {
                    s.Deliver(message);
                }
            }
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public Task<IEventSubscription> SubscribeAsync(string subject, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(subject);
        var s = new Subscription(this, subject);
        lock (_lock)
        {
            _subscriptions = [.. _subscriptions, s];
        }

        return Task.FromResult<IEventSubscription>(s);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        foreach (Subscription s in Volatile.Read(ref _subscriptions))
        {
            await s.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void Remove(Subscription s)
    {
        lock (_lock)
        {
            _subscriptions = _subscriptions.Where(x => x != s).ToArray();
        }
    }

    private sealed class Subscription(InProcessEventPlane plane, string pattern) : IEventSubscription
    {
        private readonly Channel<EventMessage> _messages = Channel.CreateBounded<EventMessage>(
            new BoundedChannelOptions(BufferCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropOldest },
            _ => { });

        private long _dropped;

        public string Pattern => pattern;

        public long Dropped => Interlocked.Read(ref _dropped);

        public void Deliver(EventMessage message)
        {
            if (_messages.Reader.Count >= BufferCapacity)
            {
                Interlocked.Increment(ref _dropped);
            }

            _messages.Writer.TryWrite(message);
        }

        public async IAsyncEnumerable<EventMessage> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
        {
            while (await _messages.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (_messages.Reader.TryRead(out EventMessage? m))
                {
                    yield return m;
                }
            }
        }

        public ValueTask DisposeAsync()
        {
            plane.Remove(this);
            _messages.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }
    }
}

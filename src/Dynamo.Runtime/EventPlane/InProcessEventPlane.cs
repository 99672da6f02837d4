using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// The in-process twin of the NATS event plane, held to the same contract (IEventPlane): every subscription
/// whose pattern matches gets the message in its own bounded buffer
/// (<see cref="InProcessEventPlaneOptions.BufferCapacity"/>; the oldest is dropped and counted when a
/// subscriber falls behind), in publish order.
/// </summary>
public sealed class InProcessEventPlane : IEventPlane
{
    private readonly InProcessEventPlaneOptions _options;
    private readonly Lock _lock = new();
    private Subscription[] _subscriptions = [];
    private int _disposed;

    /// <summary>A plane with <see cref="InProcessEventPlaneOptions.Default"/>.</summary>
    public InProcessEventPlane()
        : this(InProcessEventPlaneOptions.Default)
    {
    }

    /// <summary>A plane with <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentException">A setting is out of range.</exception>
    public InProcessEventPlane(InProcessEventPlaneOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    /// <inheritdoc/>
    public string Name => "inproc";

    /// <inheritdoc/>
    public ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default)
    {
        SubjectPattern.ValidateSubject(subject, nameof(subject));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (payload.Length > _options.MaxPayload)
        {
            throw new ArgumentException($"an event of {payload.Length} bytes on {subject} is over the event plane's max_payload of {_options.MaxPayload} bytes", nameof(payload));
        }

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
        SubjectPattern.ValidatePattern(subject, nameof(subject));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var s = new Subscription(this, subject, _options.BufferCapacity);
        lock (_lock)
        {
            _subscriptions = [.. _subscriptions, s];
        }

        return Task.FromResult<IEventSubscription>(s);
    }

    /// <summary>Ends every subscription; publishing and subscribing throw <see cref="ObjectDisposedException"/> after.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

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

    private sealed class Subscription : IEventSubscription
    {
        private readonly InProcessEventPlane _plane;
        private readonly Channel<EventMessage> _messages;
        private long _dropped;

        public Subscription(InProcessEventPlane plane, string pattern, int capacity)
        {
            _plane = plane;
            Pattern = pattern;
            _messages = Channel.CreateBounded<EventMessage>(
                new BoundedChannelOptions(capacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropOldest },
                _ => Interlocked.Increment(ref _dropped));
        }

        public string Pattern { get; }

        public long Dropped => Interlocked.Read(ref _dropped);

        public void Deliver(EventMessage message) => _messages.Writer.TryWrite(message);

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
            _plane.Remove(this);
            _messages.Writer.TryComplete();
            return ValueTask.CompletedTask;
        }
    }
}

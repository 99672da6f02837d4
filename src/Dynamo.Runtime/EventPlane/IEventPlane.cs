namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// Publish/subscribe for KV events and load metrics: NATS core subjects between processes
/// (<c>NatsEventPlane</c>), a broadcaster in one process (<c>InProcessEventPlane</c>), both held to the
/// contract of the folder's README. Delivery is at most once and in publish order per publisher; a subscriber
/// that falls more than its buffer behind loses the oldest messages (consumers detect gaps with the sequence
/// numbers in the payloads). Subjects are dot-separated tokens; a subscription may use NATS wildcards ('*' one
/// token, '&gt;' the rest). Payloads up to 1 MiB.
/// </summary>
public interface IEventPlane : IAsyncDisposable
{
    /// <summary>"nats" or "inproc".</summary>
    string Name { get; }

    /// <summary>Publishes one message.</summary>
    /// <exception cref="ArgumentException">A subject with a wildcard or a malformed token, or a payload over the limit.</exception>
    ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default);

    /// <summary>
    /// Messages on subjects matching <paramref name="subject"/>, from the moment the returned task completes
    /// (the subscription is active then) until the subscription is disposed.
    /// </summary>
    Task<IEventSubscription> SubscribeAsync(string subject, CancellationToken cancellationToken = default);
}

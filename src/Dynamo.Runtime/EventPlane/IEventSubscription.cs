namespace Dynamo.Runtime.EventPlane;

/// <summary>An active subscription; dispose to stop it.</summary>
public interface IEventSubscription : IAsyncDisposable
{
    /// <summary>The messages, in arrival order. Ends when the subscription or its plane is disposed.</summary>
    IAsyncEnumerable<EventMessage> ReadAllAsync(CancellationToken cancellationToken = default);

    /// <summary>Messages dropped because this subscriber fell behind.</summary>
    long Dropped { get; }
}

namespace Dynamo.Llm.Routing;

/// <summary>
/// The requests a <see cref="KvRouter"/> holds while every candidate is saturated: first come, first served,
/// at most <see cref="KvRouterOptions.MaxQueue"/> (the router refuses beyond it), each for at most
/// <see cref="KvRouterOptions.QueueTimeout"/>. Not thread-safe: the
/// router's gate guards it.
/// </summary>
internal sealed class AdmissionQueue
{
    private readonly LinkedList<QueuedRoute> _waiting = new();

    public int Count => _waiting.Count;

    /// <summary>The oldest waiting request, or null.</summary>
    public QueuedRoute? First => _waiting.First?.Value;

    /// <summary>Queues a request at the back.</summary>
    public QueuedRoute Enqueue(PendingRoute request)
    {
        var queued = new QueuedRoute(request);
        queued.Node = _waiting.AddLast(queued);
        return queued;
    }

    /// <summary>Takes the oldest request off the queue and stops watching its cancellation.</summary>
    public QueuedRoute Dequeue()
    {
        QueuedRoute first = _waiting.First?.Value ?? throw new InvalidOperationException("the admission queue is empty");
        _waiting.RemoveFirst();
        first.StopWatching();
        return first;
    }

    /// <summary>Takes a cancelled or timed-out request off the queue; false when it already left it.</summary>
    public bool Remove(QueuedRoute queued)
    {
        if (queued.Node?.List is null)
        {
            return false;
        }

        _waiting.Remove(queued.Node);
        queued.StopWatching();
        return true;
    }
}

using System.Collections.Concurrent;

namespace Dynamo.Llm.Engines;

/// <summary>
/// A multi-producer, single-consumer queue whose consumer can wait for the next item either blocking a
/// thread (<see cref="Wait"/>: the built-in engine's dedicated thread) or awaiting (<see cref="WaitAsync"/>:
/// the mocker's and echo engine's async loops). Neither spins: both wait on one <see cref="SemaphoreSlim"/>
/// that is released at most once per wait, whatever the number of items queued meanwhile.
/// <para>
/// The consumer drains with <see cref="TryDequeue"/> (also between waits, while it has other work) and waits
/// only when it found nothing to do. An item queued after its last drain has released the semaphore, so the
/// wait returns at once; an item already drained may leave one release behind, which costs one empty turn.
/// </para>
/// </summary>
internal sealed class CommandQueue<T>
{
    private readonly ConcurrentQueue<T> _items = new();
    private readonly SemaphoreSlim _signal = new(0);

    /// <summary>1 while a release is pending or being consumed: producers release only on its 0 -> 1 change.</summary>
    private int _signalled;

    /// <summary>Queues an item and wakes the consumer (any thread).</summary>
    public void Enqueue(T item)
    {
        _items.Enqueue(item);
        if (Interlocked.Exchange(ref _signalled, 1) == 0)
        {
            _signal.Release();
        }
    }

    /// <summary>Takes the oldest item (consumer only).</summary>
    public bool TryDequeue(out T item) => _items.TryDequeue(out item!);

    /// <summary>
    /// Blocks until an item may be there, <paramref name="millisecondsTimeout"/> passed or
    /// <paramref name="cancellationToken"/> is cancelled; false on timeout or cancellation (consumer only).
    /// </summary>
    public bool Wait(int millisecondsTimeout, CancellationToken cancellationToken)
    {
        try
        {
            if (!_signal.Wait(millisecondsTimeout, cancellationToken))
            {
                return false;
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }

        Interlocked.Exchange(ref _signalled, 0);
        return true;
    }

    /// <summary>Completes when an item may be there; throws <see cref="OperationCanceledException"/> when cancelled (consumer only).</summary>
    public async Task WaitAsync(CancellationToken cancellationToken)
    {
        await _signal.WaitAsync(cancellationToken).ConfigureAwait(false);
        Interlocked.Exchange(ref _signalled, 0);
    }
}

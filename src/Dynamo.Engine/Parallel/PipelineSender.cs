using System.Buffers;
using System.Collections.Concurrent;
using Dynamo.Llm.Parallel;

namespace Dynamo.Engine.Parallel;

/// <summary>
/// A pipeline stage's outgoing messages, sent by a thread of their own so that a stage goes on computing its next
/// micro-batch while the last one travels (a send waits when the receiver has not taken the previous piece yet). Each
/// message is copied into a pooled buffer, returned once sent. Messages leave in the order queued. <see cref="Flush"/>
/// waits until every queued message is handed to the transport: the stage calls it at the end of each pass, so that no
/// send overlaps the collectives that follow (plans, keepalives). A failed send breaks the group; the failure is thrown
/// again by the next <see cref="Enqueue"/> or <see cref="Flush"/>.
/// </summary>
internal sealed class PipelineSender : IDisposable
{
    private readonly ICollectiveGroup _group;
    private readonly BlockingCollection<(float[] Buffer, int Length, int Destination)> _queue = [];
    private readonly Thread _thread;
    private readonly object _gate = new();
    private int _pending;
    private Exception? _failure;

    public PipelineSender(ICollectiveGroup group)
    {
        _group = group;
        _thread = new Thread(Run) { IsBackground = true, Name = $"dynamo-pp-sender-{group.Rank}" };
        _thread.Start();
    }

    /// <summary>Queues a copy of <paramref name="values"/> for rank <paramref name="destination"/>.</summary>
    public void Enqueue(ReadOnlySpan<float> values, int destination)
    {
        ThrowIfFailed();
        float[] buffer = ArrayPool<float>.Shared.Rent(values.Length);
        values.CopyTo(buffer);
        lock (_gate)
        {
            _pending++;
        }

        _queue.Add((buffer, values.Length, destination));
    }

    /// <summary>Waits until every queued message is sent (bounded by the group's own timeouts: a stuck send fails).</summary>
    public void Flush()
    {
        lock (_gate)
        {
            while (_pending > 0 && _failure is null)
            {
                Monitor.Wait(_gate);
            }
        }

        ThrowIfFailed();
    }

    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(5));
    }

    private void Run()
    {
        foreach ((float[] buffer, int length, int destination) in _queue.GetConsumingEnumerable())
        {
            try
            {
                if (Volatile.Read(ref _failure) is null)
                {
                    _group.Send(buffer.AsSpan(0, length), destination);
                }
            }
            catch (Exception e) when (e is CollectiveException or ObjectDisposedException)
            {
                Volatile.Write(ref _failure, e);
            }
            finally
            {
                ArrayPool<float>.Shared.Return(buffer);
                lock (_gate)
                {
                    _pending--;
                    Monitor.PulseAll(_gate);
                }
            }
        }
    }

    private void ThrowIfFailed()
    {
        switch (Volatile.Read(ref _failure))
        {
            case null:
                return;
            case CollectiveException c:
                throw new CollectiveException(c.Message, c.Rank, c);
            case { } other:
                throw new CollectiveException($"rank {_group.Rank}: a send failed: {other.Message}", _group.Rank, other);
        }
    }
}

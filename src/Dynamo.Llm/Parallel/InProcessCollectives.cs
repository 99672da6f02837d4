namespace Dynamo.Llm.Parallel;

/// <summary>
/// The in-process twin of the network collectives: <see cref="Create"/> gives the <see cref="ICollectiveGroup"/> of
/// each of Size ranks that run as threads of one process (each calls its group from its own thread). Same contract:
/// sums in rank order, results identical on every rank; a rank that disposes its group or stalls past the timeout
/// breaks the group for all, naming that rank.
/// </summary>
public static class InProcessCollectives
{
    /// <summary>One group per rank, index = rank.</summary>
    public static ICollectiveGroup[] Create(int size, TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        var shared = new Shared(size, timeout);
        var groups = new ICollectiveGroup[size];
        for (int r = 0; r < size; r++)
        {
            groups[r] = new Group(shared, r);
        }

        return groups;
    }

    private sealed class Shared(int size, TimeSpan timeout)
    {
        public readonly int Size = size;
        public readonly TimeSpan Timeout = timeout;
        public readonly Barrier Barrier = new(size);
        public readonly float[][] Slots = new float[size][];
        public readonly int[] Lengths = new int[size];
        public readonly CancellationTokenSource Broken = new();
        public byte[] Message = [];
        public int LostRank = -1;

        // Point-to-point messages, [from * Size + to], each in the order sent.
        public readonly System.Collections.Concurrent.BlockingCollection<float[]>[] Mailboxes =
            [.. Enumerable.Range(0, size * size).Select(_ => new System.Collections.Concurrent.BlockingCollection<float[]>())];

        public void Fail(int rank)
        {
            Interlocked.CompareExchange(ref LostRank, rank, -1);
            Broken.Cancel();
        }
    }

    private sealed class Group(Shared shared, int rank) : ICollectiveGroup
    {
        private bool _disposed;

        public int Rank => rank;

        public int Size => shared.Size;

        public void AllReduceSum(Span<float> values)
        {
            Post(values);
            Wait();
            for (int i = 0; i < values.Length; i++)
            {
                float sum = shared.Slots[0][i];
                for (int r = 1; r < shared.Size; r++)
                {
                    sum += shared.Slots[r][i];
                }

                values[i] = sum;
            }

            Wait();
        }

        public void Gather(ReadOnlySpan<float> local, Span<float> gathered, int root = 0)
        {
            CheckRoot(root);
            if (rank == root && gathered.Length != local.Length * shared.Size)
            {
                throw new ArgumentException($"gather: the root needs {local.Length * shared.Size} floats, got {gathered.Length}", nameof(gathered));
            }

            Post(local);
            Wait();
            if (rank == root)
            {
                for (int r = 0; r < shared.Size; r++)
                {
                    if (shared.Lengths[r] != local.Length)
                    {
                        shared.Fail(r);
                        throw new CollectiveException($"gather: rank {r} sent {shared.Lengths[r]} floats, rank {rank} {local.Length}", r);
                    }

                    shared.Slots[r].AsSpan(0, local.Length).CopyTo(gathered.Slice(r * local.Length, local.Length));
                }
            }

            Wait();
        }

        public ReadOnlyMemory<byte> Broadcast(ReadOnlyMemory<byte> message, int root = 0)
        {
            CheckRoot(root);
            if (rank == root)
            {
                shared.Message = message.ToArray();
            }

            Wait();
            byte[] received = shared.Message;
            Wait();
            return rank == root ? message : received;
        }

        public void Send(ReadOnlySpan<float> values, int destination)
        {
            CheckPeer(destination);
            ThrowIfBroken();
            shared.Mailboxes[(rank * shared.Size) + destination].Add(values.ToArray());
        }

        public void Receive(Span<float> values, int source)
        {
            CheckPeer(source);
            float[]? message;
            try
            {
                if (!shared.Mailboxes[(source * shared.Size) + rank].TryTake(out message, (int)shared.Timeout.TotalMilliseconds, shared.Broken.Token))
                {
                    shared.Fail(source);
                    throw new CollectiveException($"rank {rank}: rank {source} sent nothing for {shared.Timeout.TotalSeconds:0.#} s", source);
                }
            }
            catch (OperationCanceledException)
            {
                ThrowIfBroken();
                throw;
            }

            if (message.Length != values.Length)
            {
                shared.Fail(source);
                throw new CollectiveException($"rank {rank}: rank {source} sent {message.Length} floats where {values.Length} were expected", source);
            }

            message.CopyTo(values);
        }

        public void Dispose()
        {
            if (!_disposed)
            {
                _disposed = true;
                shared.Fail(rank);
            }
        }

        private void Post(ReadOnlySpan<float> values)
        {
            float[] slot = shared.Slots[rank] is { } s && s.Length >= values.Length ? s : shared.Slots[rank] = new float[values.Length];
            values.CopyTo(slot);
            shared.Lengths[rank] = values.Length;
        }

        private void CheckRoot(int root)
        {
            if ((uint)root >= (uint)shared.Size)
            {
                throw new ArgumentOutOfRangeException(nameof(root), $"root {root} is not a rank of a group of {shared.Size}");
            }
        }

        private void CheckPeer(int peer)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if ((uint)peer >= (uint)shared.Size || peer == rank)
            {
                throw new ArgumentOutOfRangeException(nameof(peer), $"rank {peer} is not another rank of a group of {shared.Size}");
            }
        }

        private void ThrowIfBroken()
        {
            if (shared.Broken.IsCancellationRequested)
            {
                int lost = Volatile.Read(ref shared.LostRank);
                throw new CollectiveException($"rank {lost} of the in-process group left; rank {rank} stops", lost);
            }
        }

        private void Wait()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            bool arrived;
            try
            {
                arrived = shared.Barrier.SignalAndWait(shared.Timeout, shared.Broken.Token);
            }
            catch (OperationCanceledException)
            {
                int lost = Volatile.Read(ref shared.LostRank);
                throw new CollectiveException($"rank {lost} of the in-process group left; rank {rank} stops", lost);
            }

            if (!arrived)
            {
                shared.Fail(rank);
                throw new CollectiveException($"rank {rank}: the other ranks did not arrive within {shared.Timeout.TotalSeconds:0.#} s");
            }
        }
    }
}

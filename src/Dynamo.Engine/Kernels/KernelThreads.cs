namespace Dynamo.Engine.Kernels;

/// <summary>How many threads the kernels use (the calling thread included). Set once at startup.</summary>
public static class KernelThreads
{
    private static WorkerPool? _pool;
    private static int _count = Environment.ProcessorCount;
    private static readonly Lock Gate = new();

    [ThreadStatic]
    private static int _threadCount;

    [ThreadStatic]
    private static WorkerPool? _threadPool;

    /// <summary>Threads per kernel call; defaults to <see cref="Environment.ProcessorCount"/>.</summary>
    public static int Count
    {
        get => _count;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            lock (Gate)
            {
                if (value == _count)
                {
                    return;
                }

                _pool?.Dispose();
                _pool = null;
                _count = value;
            }
        }
    }

    internal static WorkerPool? Pool
    {
        get
        {
            if (_threadCount != 0)
            {
                return _threadPool;
            }

            if (_count <= 1)
            {
                return null;
            }

            WorkerPool? p = _pool;
            if (p is not null)
            {
                return p;
            }

            lock (Gate)
            {
                return _pool ??= new WorkerPool(_count - 1);
            }
        }
    }

    /// <summary>
    /// For tests: kernel calls made on the current thread use <paramref name="count"/> threads (a pool
    /// of their own) until the returned scope is disposed; other threads and <see cref="Count"/> are
    /// untouched, so tests running in parallel do not disturb each other.
    /// </summary>
    internal static ThreadOverride OverrideOnCurrentThread(int count)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var previous = new ThreadOverride(_threadCount, _threadPool);
        _threadCount = count;
        _threadPool = count > 1 ? new WorkerPool(count - 1) : null;
        return previous;
    }

    /// <summary>Restores the thread count the current thread had before <see cref="OverrideOnCurrentThread"/>.</summary>
    internal readonly struct ThreadOverride(int previousCount, WorkerPool? previousPool) : IDisposable
    {
        public void Dispose()
        {
            _threadPool?.Dispose();
            _threadCount = previousCount;
            _threadPool = previousPool;
        }
    }
}

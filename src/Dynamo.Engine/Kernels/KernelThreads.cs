namespace Dynamo.Engine.Kernels;

/// <summary>How many threads the kernels use (the calling thread included). Set once at startup.</summary>
public static class KernelThreads
{
    private static WorkerPool? _pool;
    private static int _count = Environment.ProcessorCount;
    private static readonly Lock Gate = new();

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
}

namespace Dynamo.Engine.Kernels;

/// <summary>
/// A fixed set of worker threads that, with the calling thread, split a range of chunks. Workers
/// spin for a short while after each job (kernel calls come in quick succession while decoding)
/// and then sleep on a semaphore. Nothing is allocated per job: the job is a function pointer and a
/// pointer to the caller's stack-held context.
/// </summary>
internal sealed unsafe class WorkerPool : IDisposable
{
    private const int SpinIterations = 20_000;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _sleeping;
    private readonly Lock _callGate = new();
    private delegate*<void*, int, void> _body;
    private void* _context;
    private int _chunks;
    private int _next;
    private int _pending;
    private int _generation;
    private volatile bool _stopping;

    public WorkerPool(int workers)
    {
        _threads = new Thread[workers];
        _wake = new SemaphoreSlim[workers];
        _sleeping = new int[workers];
        for (int i = 0; i < workers; i++)
        {
            _wake[i] = new SemaphoreSlim(0);
            int index = i;
            _threads[i] = new Thread(() => Work(index)) { IsBackground = true, Name = $"dynamo-kernel-{i + 1}" };
            _threads[i].Start();
        }
    }

    public int Workers => _threads.Length;

    /// <summary>Calls <paramref name="body"/>(context, chunk) for every chunk in [0, chunks), on all threads; returns when all are done.</summary>
    public void Run(delegate*<void*, int, void> body, void* context, int chunks)
    {
        lock (_callGate)
        {
            _body = body;
            _context = context;
            _chunks = chunks;
            _next = 0;
            _pending = _threads.Length;
            Interlocked.Increment(ref _generation);
            for (int i = 0; i < _sleeping.Length; i++)
            {
                if (Interlocked.CompareExchange(ref _sleeping[i], 0, 1) == 1)
                {
                    _wake[i].Release();
                }
            }

            Drain();
            SpinWait spin = default;
            while (Volatile.Read(ref _pending) != 0)
            {
                spin.SpinOnce(-1);
            }
        }
    }

    private void Drain()
    {
        int chunk;
        while ((chunk = Interlocked.Increment(ref _next) - 1) < _chunks)
        {
            _body(_context, chunk);
        }
    }

    private void Work(int index)
    {
        int seen = 0;
        while (true)
        {
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen)
            {
                if (++spins < SpinIterations)
                {
                    Thread.SpinWait(20);
                    continue;
                }

                Volatile.Write(ref _sleeping[index], 1);
                if (Volatile.Read(ref _generation) != seen && Interlocked.CompareExchange(ref _sleeping[index], 0, 1) == 1)
                {
                    break;
                }

                _wake[index].Wait();
                spins = 0;
            }

            if (_stopping)
            {
                return;
            }

            seen = Volatile.Read(ref _generation);
            Drain();
            Interlocked.Decrement(ref _pending);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        Interlocked.Increment(ref _generation);
        for (int i = 0; i < _sleeping.Length; i++)
        {
            if (Interlocked.CompareExchange(ref _sleeping[i], 0, 1) == 1)
            {
                _wake[i].Release();
            }
        }
    }
}

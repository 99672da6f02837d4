namespace Dynamo.Engine.Kernels;

/// <summary>
/// A fixed set of worker threads that, with the calling thread, split a range of chunks. Nothing is
/// allocated per job: the job is a function pointer and a pointer to the caller's context.
/// Invariants: one 64-bit word holds (generation, chunk count, next chunk), so a thread claims a
/// chunk with one compare-exchange that fails if the job has changed; the caller waits for all
/// chunks to be done, never for a worker to wake up, so a worker the OS has not scheduled does not
/// hold the caller back (it finds no chunk left when it runs). Workers spin briefly between jobs
/// (decode calls come in quick succession), then sleep on a semaphore.
/// </summary>
internal sealed unsafe class WorkerPool : IDisposable
{
    private const int SpinIterations = 4_000;
    private const int ChunkBits = 24;
    private const long ChunkMask = (1L << ChunkBits) - 1;

    private readonly Thread[] _threads;
    private readonly SemaphoreSlim[] _wake;
    private readonly int[] _sleeping;
    private readonly Lock _callGate = new();
    private delegate*<void*, int, void> _body;
    private void* _context;
    private long _state;
    private int _done;
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

    private static long Generation(long state) => state >>> (2 * ChunkBits);

    /// <summary>Calls <paramref name="body"/>(context, chunk) for every chunk in [0, chunks), on all threads; returns when all are done.</summary>
    public void Run(delegate*<void*, int, void> body, void* context, int chunks)
    {
        if (chunks > ChunkMask)
        {
            throw new ArgumentOutOfRangeException(nameof(chunks));
        }

        lock (_callGate)
        {
            _body = body;
            _context = context;
            _done = 0;
            long generation = Generation(_state) + 1;
            Interlocked.Exchange(ref _state, (generation << (2 * ChunkBits)) | ((long)chunks << ChunkBits));
            for (int i = 0; i < _sleeping.Length; i++)
            {
                if (Interlocked.CompareExchange(ref _sleeping[i], 0, 1) == 1)
                {
                    _wake[i].Release();
                }
            }

            Drain(generation);
            SpinWait spin = default;
            while (Volatile.Read(ref _done) != chunks)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    private void Drain(long generation)
    {
        while (true)
        {
            long s = Volatile.Read(ref _state);
            long next = s & ChunkMask, chunks = (s >> ChunkBits) & ChunkMask;
            if (Generation(s) != generation || next >= chunks)
            {
                return;
            }

            if (Interlocked.CompareExchange(ref _state, s + 1, s) == s)
            {
                _body(_context, (int)next);
                Interlocked.Increment(ref _done);
            }
        }
    }

    private void Work(int index)
    {
        long seen = 0;
        while (true)
        {
            int spins = 0;
            while (Generation(Volatile.Read(ref _state)) == seen)
            {
                if (++spins < SpinIterations)
                {
                    Thread.SpinWait(30);
                    continue;
                }

                Volatile.Write(ref _sleeping[index], 1);
                if (Generation(Volatile.Read(ref _state)) != seen && Interlocked.CompareExchange(ref _sleeping[index], 0, 1) == 1)
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

            seen = Generation(Volatile.Read(ref _state));
            Drain(seen);
        }
    }

    /// <summary>Stops the workers once the job in progress (if any) is done; a later <see cref="Run"/> still works, on the calling thread alone.</summary>
    public void Dispose()
    {
        lock (_callGate)
        {
            _stopping = true;
            Interlocked.Add(ref _state, 1L << (2 * ChunkBits));
        }

        for (int i = 0; i < _sleeping.Length; i++)
        {
            if (Interlocked.CompareExchange(ref _sleeping[i], 0, 1) == 1)
            {
                _wake[i].Release();
            }
        }
    }
}

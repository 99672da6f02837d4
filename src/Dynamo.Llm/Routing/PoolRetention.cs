namespace Dynamo.Llm.Routing;

/// <summary>
/// One worker's eviction estimate: how long a block freed now stays in its KV pool before the pool reuses it. A freed
/// block joins the pool's free list behind the blocks freed before it, and every new block the worker stores takes the
/// oldest free one, so it survives about <c>free blocks / new-block rate</c>: the free blocks from the worker's load
/// reports (<c>kv_blocks_total - kv_blocks_used</c>), the rate from the new blocks the router itself sends the worker
/// (the uncached prompt blocks it charges, corrected by the cached tokens the engine reports at completion, and the blocks its
/// output filled, when the completion says how long it was). Both are smoothed with an exponentially weighted moving average over
/// <see cref="SmoothingTime"/>, folded at each load report at least <see cref="MinSampleInterval"/> after the last, and
/// the estimate is clamped to [<see cref="MinRetention"/>, <see cref="MaxRetention"/>]; before a report and a sampled
/// rate exist it is <see cref="DefaultRetention"/>. Not thread-safe: the router's gate guards it (Routing/README.md,
/// "Without KV events").
/// </summary>
internal sealed class PoolRetention
{
    /// <summary>The lifetime before any estimate exists: the original system's default TTL of an approximate router's blocks.</summary>
    public static readonly TimeSpan DefaultRetention = TimeSpan.FromSeconds(120);

    /// <summary>The floor: the event-mode recent-prefix window; a prefix just completed is on its worker at least that long.</summary>
    public static readonly TimeSpan MinRetention = TimeSpan.FromSeconds(1);

    /// <summary>The ceiling: an idle worker's estimate would be unbounded; a prediction older than this is not trusted.</summary>
    public static readonly TimeSpan MaxRetention = TimeSpan.FromMinutes(10);

    /// <summary>Time constant of the moving averages: samples this old weigh 1/e of a new one.</summary>
    public static readonly TimeSpan SmoothingTime = TimeSpan.FromSeconds(30);

    /// <summary>Reports closer than this to the last sample only update the pool size; the rate needs an interval.</summary>
    public static readonly TimeSpan MinSampleInterval = TimeSpan.FromMilliseconds(500);

    private long _newBlocks;
    private long _sampledAt;
    private bool _started;
    private bool _sampled;
    private double _rate;
    private double _free;

    /// <summary>The pool's size by the latest report (0: no report yet).</summary>
    public int TotalBlocks { get; private set; }

    /// <summary>The smoothed rate of new blocks sent to the worker, per second (0 before the first sample).</summary>
    public double BlocksPerSecond => _rate;

    /// <summary>The smoothed free blocks of the pool (0 before the first report).</summary>
    public double FreeBlocks => _free;

    /// <summary>The router sent the worker <paramref name="blocks"/> blocks it does not hold yet.</summary>
    public void Added(long blocks) => _newBlocks += Math.Max(blocks, 0);

    /// <summary>
    /// A completed request's engine found <paramref name="blocks"/> fewer of its prompt blocks cached than the router
    /// predicted (negative: more): the worker stored that many more (fewer) new blocks than charged.
    /// </summary>
    public void Corrected(long blocks) => _newBlocks += blocks;

    /// <summary>
    /// A completed request of <paramref name="promptTokens"/> prompt tokens generated <paramref name="outputTokens"/> tokens:
    /// the blocks its output filled beyond the prompt's, <c>ceil((prompt + output) / block) - ceil(prompt / block)</c>, are new
    /// blocks too (the prompt's partial last block, which the output fills first, was counted with the prompt's charge).
    /// </summary>
    public void Generated(int promptTokens, int outputTokens, int blockSize)
    {
        if (outputTokens <= 0 || promptTokens < 0 || blockSize <= 0)
        {
            return;
        }

        long prompt = promptTokens;
        _newBlocks += ((prompt + outputTokens + blockSize - 1) / blockSize) - ((prompt + blockSize - 1) / blockSize);
    }

    /// <summary>A load report at timestamp <paramref name="now"/> (of <paramref name="time"/>): folds the blocks sent since the last sample into the rate.</summary>
    public void Reported(int totalBlocks, int usedBlocks, long now, TimeProvider time)
    {
        TotalBlocks = Math.Max(totalBlocks, 0);
        double free = Math.Clamp(totalBlocks - usedBlocks, 0, TotalBlocks);
        if (!_started)
        {
            _started = true;
            _sampledAt = now;
            _newBlocks = 0;
            _free = free;
            return;
        }

        TimeSpan elapsed = time.GetElapsedTime(_sampledAt, now);
        if (elapsed < MinSampleInterval)
        {
            return;
        }

        double seconds = elapsed.TotalSeconds;
        double rate = Math.Max(_newBlocks, 0) / seconds;
        double alpha = 1 - Math.Exp(-seconds / SmoothingTime.TotalSeconds);
        _rate = _sampled ? _rate + (alpha * (rate - _rate)) : rate;
        _free += alpha * (free - _free);
        _sampled = true;
        _sampledAt = now;
        _newBlocks = 0;
    }

    /// <summary>How long a block freed now is expected to stay cached on the worker.</summary>
    public TimeSpan Retention()
    {
        if (!_sampled || TotalBlocks == 0)
        {
            return DefaultRetention;
        }

        if (_rate <= 0)
        {
            return MaxRetention;
        }

        double seconds = _free / _rate;
        return seconds >= MaxRetention.TotalSeconds ? MaxRetention : seconds <= MinRetention.TotalSeconds ? MinRetention : TimeSpan.FromSeconds(seconds);
    }
}

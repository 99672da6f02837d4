using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Routing;

/// <summary>
/// The prefixes a <see cref="KvRouter"/> expects on its workers before their KV events say so: the prompt
/// blocks of requests in flight (a <see cref="PrefixTable"/> used as a multiset: one count per request
/// holding a block on a worker) and of requests completed on it and remembered (<see cref="RememberedPrefix"/>): with
/// KV events for the recent-prefix window, while their events are on the event plane; without (<c>--no-kv-events</c>)
/// for as long as the worker's pool is expected to keep them (<see cref="PoolRetention"/>). Matching a request against both gives each worker's in-flight and
/// recent overlap. Not thread-safe: the router's gate guards it (Routing/README.md, "Cost").
/// </summary>
internal sealed class InflightLedger(KvRouterOptions options, TimeProvider time)
{
    /// <summary>At most this many blocks are remembered on a worker before its first load report names its pool's size.</summary>
    public const int DefaultPoolBlocks = 16384;

    private readonly PrefixTable _inflight = new();
    private readonly PrefixTable _recent = new();
    private readonly Stack<ulong[]> _recentArrays = new();
    private int _remembered;

    /// <summary>
    /// Leading blocks of a prompt the ledger tracks (<see cref="Tracked"/>). Past them a prefix in flight or remembered
    /// already outweighs any load difference (1,024 blocks x the overlap weight), and charging every block of the
    /// longest prompts (tens of thousands of tokens) was most of the router's slowest decisions at 1,000 workers: one
    /// table insert each, out of cache. The blocks past them still count as in-flight load, each as distinct.
    /// </summary>
    public const int MaxTrackedBlocks = 1024;

    /// <summary>The leading hashes the ledger tracks of a prompt's (at most <see cref="MaxTrackedBlocks"/>).</summary>
    public static ReadOnlySpan<ulong> Tracked(ReadOnlySpan<ulong> hashes) => hashes.Length <= MaxTrackedBlocks ? hashes : hashes[..MaxTrackedBlocks];

    /// <summary>
    /// Adds a routed request's blocks to its worker (each block the worker did not hold yet counts as a distinct active
    /// block; blocks past <see cref="MaxTrackedBlocks"/> count as distinct without being tracked).
    /// </summary>
    public void Charge(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        ReadOnlySpan<ulong> tracked = Tracked(hashes);
        worker.DistinctBlocks += hashes.Length - tracked.Length;
        for (int i = 0; i < tracked.Length; i++)
        {
            if (_inflight.Increment(tracked[i], worker.Slot))
            {
                worker.DistinctBlocks++;
            }
        }
    }

    /// <summary>Removes a finished request's blocks from its worker (the same <paramref name="hashes"/> it was charged).</summary>
    public void Release(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        ReadOnlySpan<ulong> tracked = Tracked(hashes);
        worker.DistinctBlocks -= hashes.Length - tracked.Length;
        for (int i = 0; i < tracked.Length; i++)
        {
            if (_inflight.Decrement(tracked[i], worker.Slot))
            {
                worker.DistinctBlocks--;
            }
        }
    }

    /// <summary>
    /// A request completed on <paramref name="worker"/>: its prefix counts as cached there for the worker's
    /// <see cref="Lifetime"/> (with KV events, while they travel; without, while the pool is expected to keep it). The
    /// worker's remembered blocks stay within its pool (<see cref="PoolRetention.TotalBlocks"/>, or
    /// <see cref="DefaultPoolBlocks"/> before a report): beyond it its oldest prefixes are dropped first. Reuses the
    /// arrays of dropped entries: no allocation once warmed up.
    /// </summary>
    public void Remember(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        if (!options.CountInflightPrefixes || hashes.IsEmpty || Lifetime(worker) <= TimeSpan.Zero)
        {
            return;
        }

        hashes = Tracked(hashes);

        int count = hashes.Length;
        ulong[] kept = _recentArrays.TryPop(out ulong[]? reused) && reused.Length >= count ? reused : new ulong[Math.Max(count, 64)];
        hashes.CopyTo(kept);
        for (int i = 0; i < count; i++)
        {
            if (_recent.Increment(kept[i], worker.Slot))
            {
                worker.RememberedBlocks++;
            }
        }

        worker.Remembered.Enqueue(new RememberedPrefix(kept, count, time.GetTimestamp()));
        _remembered++;
        long capacity = worker.Retention.TotalBlocks > 0 ? worker.Retention.TotalBlocks : DefaultPoolBlocks;
        while (worker.RememberedBlocks > capacity && worker.Remembered.Count > 0)
        {
            DropOldest(worker);
        }
    }

    /// <summary>
    /// How long a completed request's prefix counts as cached on <paramref name="worker"/>: with KV events the
    /// recent-prefix window (<see cref="KvRouterOptions.RecentPrefixWindow"/>); without, the fixed
    /// <see cref="KvRouterOptions.PrefixTtl"/> when set, else the pool's own eviction estimate.
    /// </summary>
    public TimeSpan Lifetime(KvWorkerState worker) =>
        options.UseKvEvents ? options.RecentPrefixWindow : options.PrefixTtl ?? worker.Retention.Retention();

    /// <summary>
    /// A KV event of <paramref name="worker"/> applied to the index: a removed block no longer counts as remembered there
    /// (all of its remembered occurrences), a cleared pool drops every remembered prefix, so a long lifetime cannot
    /// outlive what the worker reports evicted.
    /// </summary>
    public void Evicted(KvWorkerState worker, KvEventData data)
    {
        if (worker.Remembered.Count == 0)
        {
            return;
        }

        if (data is KvRemovedData removed)
        {
            IReadOnlyList<ulong> hashes = removed.BlockHashes;
            for (int i = 0; i < hashes.Count; i++)
            {
                if (_recent.RemoveAll(hashes[i], worker.Slot))
                {
                    worker.RememberedBlocks--;
                }
            }
        }
        else if (data is KvClearedData)
        {
            DropAll(worker);
        }
    }

    /// <summary>Drops a removed worker's in-flight blocks (of <paramref name="decisions"/>) and its remembered prefixes.</summary>
    public void Forget(KvWorkerState worker, IEnumerable<RoutingDecision> decisions)
    {
        foreach (RoutingDecision d in decisions)
        {
            foreach (ulong hash in Tracked(d.Hashes.AsSpan(0, d.HashCount)))
            {
                _inflight.Decrement(hash, worker.Slot);
            }
        }

        DropAll(worker);
    }

    /// <summary>Sets every worker's <see cref="KvWorkerState.InflightOverlap"/> and <see cref="KvWorkerState.RecentOverlap"/> for a request's hashes (both must be 0 before).</summary>
    public void Match(ReadOnlySpan<ulong> hashes, WorkerSlots workers)
    {
        hashes = Tracked(hashes);
        if (_remembered > 0)
        {
            long now = time.GetTimestamp();
            foreach (KvWorkerState w in workers.Sorted)
            {
                if (w.Remembered.Count > 0)
                {
                    Expire(w, now);
                }
            }

            if (_recent.Count > 0)
            {
                _recent.Match(hashes);
                foreach (int slot in _recent.MatchedSlots)
                {
                    if (workers.At(slot) is { } w)
                    {
                        w.RecentOverlap = _recent.DepthOf(slot);
                    }
                }
            }
        }

        _inflight.Match(hashes);
        foreach (int slot in _inflight.MatchedSlots)
        {
            if (workers.At(slot) is { } w)
            {
                w.InflightOverlap = _inflight.DepthOf(slot);
            }
        }
    }

    /// <summary>Drops <paramref name="worker"/>'s remembered prefixes older than its <see cref="Lifetime"/> at <paramref name="now"/>.</summary>
    private void Expire(KvWorkerState worker, long now)
    {
        long lifetime = (long)(Lifetime(worker).TotalSeconds * time.TimestampFrequency);
        while (worker.Remembered.TryPeek(out RememberedPrefix entry) && now - entry.At >= lifetime)
        {
            DropOldest(worker);
        }
    }

    private void DropAll(KvWorkerState worker)
    {
        while (worker.Remembered.Count > 0)
        {
            DropOldest(worker);
        }
    }

    private void DropOldest(KvWorkerState worker)
    {
        RememberedPrefix entry = worker.Remembered.Dequeue();
        for (int i = 0; i < entry.Count; i++)
        {
            if (_recent.Decrement(entry.Hashes[i], worker.Slot))
            {
                worker.RememberedBlocks--;
            }
        }

        _remembered--;
        _recentArrays.Push(entry.Hashes);
    }
}

using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Routing;

/// <summary>
/// The prefixes a <see cref="KvRouter"/> expects on its workers before their KV events say so: the prompt
/// blocks of requests in flight (a <see cref="PrefixTable"/> used as a multiset: one count per request
/// holding a block on a worker) and of requests completed on it and remembered (<see cref="RememberedPrefix"/>): with
/// KV events for the recent-prefix window, while their events are on the event plane; without (<c>--no-kv-events</c>)
/// for as long as the worker's pool is expected to keep them (<see cref="PoolRetention"/>). Matching a request against both gives each worker's in-flight and
/// recent overlap. Only a prompt's tracked blocks enter the tables (<see cref="TrackedBlocks"/>: all of the first 64, then
/// ever sparser), so that a prompt of thousands of blocks costs a few hundred table operations, not thousands, at
/// each of charge, match, release, remember and expiry. Not thread-safe: the router's gate guards it (Routing/README.md, "Cost").
/// </summary>
internal sealed class InflightLedger(KvRouterOptions options, TimeProvider time)
{
    /// <summary>At most this many blocks are remembered on a worker before its first load report names its pool's size.</summary>
    public const int DefaultPoolBlocks = 16384;

    private readonly PrefixTable _inflight = new();
    private readonly PrefixTable _recent = new();
    private readonly Stack<ulong[]> _recentArrays = new();
    private ulong[] _selected = new ulong[256];
    private int[] _positions = new int[256];
    private int _remembered;

    /// <summary>
    /// Adds a routed request's blocks to its worker: its tracked blocks (<see cref="TrackedBlocks"/>), each one the worker
    /// did not hold yet counting its weight in distinct active blocks.
    /// </summary>
    public void Charge(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        for (int p = 0; p < hashes.Length; p = TrackedBlocks.Next(p, hashes.Length))
        {
            int weight = TrackedBlocks.Weight(p);
            if (_inflight.Increment(hashes[p], worker.Slot, weight))
            {
                worker.DistinctBlocks += weight;
            }
        }
    }

    /// <summary>Removes a finished request's blocks from its worker (the same <paramref name="hashes"/> it was charged).</summary>
    public void Release(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        for (int p = 0; p < hashes.Length; p = TrackedBlocks.Next(p, hashes.Length))
        {
            if (_inflight.Decrement(hashes[p], worker.Slot))
            {
                worker.DistinctBlocks -= TrackedBlocks.Weight(p);
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

        int count = TrackedBlocks.Count(hashes.Length);
        ulong[] kept = _recentArrays.TryPop(out ulong[]? reused) && reused.Length >= count ? reused : new ulong[Math.Max(count, 64)];
        int k = 0;
        for (int p = 0; p < hashes.Length; p = TrackedBlocks.Next(p, hashes.Length))
        {
            int weight = TrackedBlocks.Weight(p);
            kept[k++] = hashes[p];
            if (_recent.Increment(hashes[p], worker.Slot, weight))
            {
                worker.RememberedBlocks += weight;
            }
        }

        worker.Remembered.Enqueue(new RememberedPrefix(kept, hashes.Length, time.GetTimestamp()));
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
                int weight = _recent.PayloadOf(hashes[i]);
                if (_recent.RemoveAll(hashes[i], worker.Slot))
                {
                    worker.RememberedBlocks -= weight;
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
            for (int p = 0; p < d.HashCount; p = TrackedBlocks.Next(p, d.HashCount))
            {
                _inflight.Decrement(d.Hashes[p], worker.Slot);
            }
        }

        DropAll(worker);
    }

    /// <summary>Sets every worker's <see cref="KvWorkerState.InflightOverlap"/> and <see cref="KvWorkerState.RecentOverlap"/> for a request's hashes (both must be 0 before).</summary>
    public void Match(ReadOnlySpan<ulong> hashes, WorkerSlots workers)
    {
        int count = TrackedBlocks.Count(hashes.Length);
        if (_selected.Length < count)
        {
            _selected = new ulong[count * 2];
            _positions = new int[count * 2];
        }

        count = TrackedBlocks.Select(hashes, _selected, _positions);
        ReadOnlySpan<ulong> tracked = _selected.AsSpan(0, count);
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
                _recent.Match(tracked);
                foreach (int slot in _recent.MatchedSlots)
                {
                    if (workers.At(slot) is { } w)
                    {
                        w.RecentOverlap = _positions[_recent.DepthOf(slot) - 1] + 1;
                    }
                }
            }
        }

        _inflight.Match(tracked);
        foreach (int slot in _inflight.MatchedSlots)
        {
            if (workers.At(slot) is { } w)
            {
                w.InflightOverlap = _positions[_inflight.DepthOf(slot) - 1] + 1;
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
        int k = 0;
        for (int p = 0; p < entry.Blocks; p = TrackedBlocks.Next(p, entry.Blocks))
        {
            if (_recent.Decrement(entry.Hashes[k++], worker.Slot))
            {
                worker.RememberedBlocks -= TrackedBlocks.Weight(p);
            }
        }

        _remembered--;
        _recentArrays.Push(entry.Hashes);
    }
}

namespace Dynamo.Llm.Routing;

/// <summary>
/// The prefixes a <see cref="KvRouter"/> expects on its workers before their KV events say so: the prompt
/// blocks of requests in flight (a <see cref="PrefixTable"/> used as a multiset: one count per request
/// holding a block on a worker) and of requests completed within the recent-prefix window (their events
/// are still on the event plane). Matching a request against both gives each worker's in-flight and
/// recent overlap. Not thread-safe: the router's gate guards it (Routing/README.md, "Cost").
/// </summary>
internal sealed class InflightLedger(KvRouterOptions options, TimeProvider time)
{
    /// <summary>At most this many completed requests are remembered; older ones are forgotten first.</summary>
    public const int MaxRecent = 4096;

    private readonly PrefixTable _inflight = new();
    private readonly PrefixTable _recent = new();
    private readonly Queue<RecentPrefix> _recentQueue = new();
    private readonly Stack<ulong[]> _recentArrays = new();

    /// <summary>Adds a routed request's blocks to its worker (each block the worker did not hold yet counts as a distinct active block).</summary>
    public void Charge(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        for (int i = 0; i < hashes.Length; i++)
        {
            if (_inflight.Increment(hashes[i], worker.Slot))
            {
                worker.DistinctBlocks++;
            }
        }
    }

    /// <summary>Removes a finished request's blocks from its worker.</summary>
    public void Release(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        for (int i = 0; i < hashes.Length; i++)
        {
            if (_inflight.Decrement(hashes[i], worker.Slot))
            {
                worker.DistinctBlocks--;
            }
        }
    }

    /// <summary>
    /// A request completed on <paramref name="worker"/>: its prefix counts as cached there for the recent-prefix
    /// window (<see cref="KvRouterOptions.RecentPrefixWindow"/>), while its KV events travel. Reuses the arrays
    /// of expired entries: no allocation once warmed up.
    /// </summary>
    public void Remember(KvWorkerState worker, ReadOnlySpan<ulong> hashes)
    {
        if (!options.CountInflightPrefixes || options.RecentPrefixWindow <= TimeSpan.Zero || hashes.IsEmpty)
        {
            return;
        }

        int count = hashes.Length;
        ulong[] kept = _recentArrays.TryPop(out ulong[]? reused) && reused.Length >= count ? reused : new ulong[Math.Max(count, 64)];
        hashes.CopyTo(kept);
        for (int i = 0; i < count; i++)
        {
            _recent.Increment(kept[i], worker.Slot);
        }

        long expires = time.GetTimestamp() + (long)(options.RecentPrefixWindow.TotalSeconds * time.TimestampFrequency);
        _recentQueue.Enqueue(new RecentPrefix(kept, count, worker, expires));
        if (_recentQueue.Count > MaxRecent)
        {
            Expire(long.MaxValue, _recentQueue.Count - MaxRecent);
        }
    }

    /// <summary>Drops a removed worker's in-flight blocks (of <paramref name="decisions"/>) and its recent prefixes.</summary>
    public void Forget(KvWorkerState worker, IEnumerable<RoutingDecision> decisions)
    {
        foreach (RoutingDecision d in decisions)
        {
            for (int i = 0; i < d.HashCount; i++)
            {
                _inflight.Decrement(d.Hashes[i], worker.Slot);
            }
        }

        foreach (RecentPrefix entry in _recentQueue)
        {
            if (entry.Worker == worker)
            {
                for (int i = 0; i < entry.Count; i++)
                {
                    _recent.Decrement(entry.Hashes[i], worker.Slot);
                }
            }
        }
    }

    /// <summary>Sets every worker's <see cref="KvWorkerState.InflightOverlap"/> and <see cref="KvWorkerState.RecentOverlap"/> for a request's hashes (both must be 0 before).</summary>
    public void Match(ReadOnlySpan<ulong> hashes, WorkerSlots workers)
    {
        if (_recentQueue.Count > 0)
        {
            Expire(time.GetTimestamp());
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

    /// <summary>Ends the recent-prefix windows that are over at <paramref name="now"/>, at most <paramref name="limit"/> of them.</summary>
    private void Expire(long now, int limit = int.MaxValue)
    {
        while (limit-- > 0 && _recentQueue.TryPeek(out RecentPrefix entry) && entry.Expires <= now)
        {
            _recentQueue.Dequeue();
            if (!entry.Worker.Removed)
            {
                for (int i = 0; i < entry.Count; i++)
                {
                    _recent.Decrement(entry.Hashes[i], entry.Worker.Slot);
                }
            }

            _recentArrays.Push(entry.Hashes);
        }
    }

    private readonly record struct RecentPrefix(ulong[] Hashes, int Count, KvWorkerState Worker, long Expires);
}

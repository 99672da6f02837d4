using System.Runtime.InteropServices;
using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Routing;

/// <summary>
/// The router's global KV index: which workers (routing targets: a worker, or one data-parallel rank of a worker,
/// see <see cref="RoutingTarget"/>) hold which blocks, keyed by chained block (sequence)
/// hashes and fed by each worker's <see cref="KvEvent"/> stream. A sequence hash names a block together
/// with its whole prefix, so the map hash -> workers is the radix tree of every cached prefix.
/// <see cref="FindMatches(ReadOnlySpan{ulong}, OverlapScores)"/> gives, per worker, how many leading
/// blocks of a request it holds.
/// <para>
/// Each worker's stream is checked as <see cref="KvCachedSet"/> does: the next id applies, an old id is
/// <see cref="KvApplyResult.Stale"/>, a later one is a <see cref="KvApplyResult.Gap"/>: the worker is then
/// listed in <see cref="WorkersNeedingResync"/>, its later events are kept (up to a bound) and
/// <see cref="LoadDump"/> rebuilds its part and replays them. Thread-safe (one lock; lookups and events
/// are short). Invariants in Routing/README.md.
/// </para>
/// </summary>
public sealed class KvIndex
{
    private readonly Lock _gate = new();
    private readonly PrefixTable _table;
    private readonly Dictionary<RoutingTarget, WorkerEntry> _workers = [];
    private readonly Stack<int> _freeSlots = new();
    private RoutingTarget[] _slotWorkers = new RoutingTarget[16];
    private int _nextSlot;
    private ulong[] _tracked = new ulong[256];
    private int[] _positions = new int[256];

    /// <summary>Creates an empty index.</summary>
    /// <param name="resyncBufferCapacity">Events kept per worker while it waits for a dump; beyond it they are dropped (the dump is then followed by another resync).</param>
    /// <param name="initialBlockCapacity">Distinct blocks to reserve room for.</param>
    public KvIndex(int resyncBufferCapacity = 4096, int initialBlockCapacity = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(resyncBufferCapacity);
        ResyncBufferCapacity = resyncBufferCapacity;
        _table = new PrefixTable(initialBlockCapacity);
    }

    /// <summary>Events kept per worker while it waits for a dump.</summary>
    public int ResyncBufferCapacity { get; }

    /// <summary>Distinct blocks held by at least one worker.</summary>
    public int BlockCount
    {
        get
        {
            lock (_gate)
            {
                return _table.Count;
            }
        }
    }

    /// <summary>The workers the index knows (added, or seen in an event), by id.</summary>
    public IReadOnlyList<RoutingTarget> Workers
    {
        get
        {
            lock (_gate)
            {
                return [.. _workers.Keys.Order()];
            }
        }
    }

    /// <summary>The workers whose stream had a gap (or that were asked to resync) and wait for <see cref="LoadDump"/>.</summary>
    public IReadOnlyList<RoutingTarget> WorkersNeedingResync
    {
        get
        {
            lock (_gate)
            {
                return [.. _workers.Where(w => w.Value.NeedsResync).Select(w => w.Key).Order()];
            }
        }
    }

    /// <summary>Blocks <paramref name="target"/> holds (0 for an unknown worker).</summary>
    public int BlockCountOf(RoutingTarget target)
    {
        lock (_gate)
        {
            return _workers.TryGetValue(target, out WorkerEntry? w) ? w.BlockCount : 0;
        }
    }

    /// <summary>Whether <paramref name="target"/> holds the block of sequence hash <paramref name="hash"/>.</summary>
    public bool Holds(RoutingTarget target, ulong hash)
    {
        lock (_gate)
        {
            return _workers.TryGetValue(target, out WorkerEntry? w) && _table.Contains(hash, w.Slot);
        }
    }

    /// <summary>The id of the last event applied for <paramref name="target"/> (or of its loaded dump); 0 for none.</summary>
    public ulong LastEventId(RoutingTarget target)
    {
        lock (_gate)
        {
            return _workers.TryGetValue(target, out WorkerEntry? w) ? w.LastEventId : 0;
        }
    }

    /// <summary>Whether <paramref name="target"/> holds <paramref name="blockHash"/>.</summary>
    public bool Contains(RoutingTarget target, ulong blockHash)
    {
        lock (_gate)
        {
            return _workers.TryGetValue(target, out WorkerEntry? w) && _table.Contains(blockHash, w.Slot);
        }
    }

    /// <summary>Registers a worker with no blocks (a no-op when known); events of an unknown worker register it too.</summary>
    public void AddWorker(RoutingTarget target)
    {
        lock (_gate)
        {
            GetOrAdd(target);
        }
    }

    /// <summary>
    /// Forgets <paramref name="target"/> and every block it holds, at once (a scan of the whole table:
    /// milliseconds for a million blocks; workers leave rarely). False when unknown.
    /// </summary>
    public bool RemoveWorker(RoutingTarget target)
    {
        lock (_gate)
        {
            if (!_workers.Remove(target, out WorkerEntry? w))
            {
                return false;
            }

            ClearWorker(w);
            _freeSlots.Push(w.Slot);
            return true;
        }
    }

    /// <summary>
    /// Applies one event of its worker's stream (registering the worker if new). The next id applies;
    /// an id at or below the last is <see cref="KvApplyResult.Stale"/>; a later one, or any event while the
    /// worker waits for a dump, is <see cref="KvApplyResult.Gap"/>: nothing changes now, the worker is
    /// listed in <see cref="WorkersNeedingResync"/> and the event is kept for after <see cref="LoadDump"/>.
    /// </summary>
    public KvApplyResult Apply(KvEvent kvEvent)
    {
        ArgumentNullException.ThrowIfNull(kvEvent);
        if (kvEvent.Data is not (KvStoredData or KvRemovedData or KvClearedData))
        {
            throw new ArgumentException($"KV event {kvEvent.EventId} has data of unknown type {kvEvent.Data?.GetType().Name ?? "null"}.", nameof(kvEvent));
        }

        lock (_gate)
        {
            WorkerEntry w = GetOrAdd(new RoutingTarget(kvEvent.WorkerId, kvEvent.DpRank));
            if (kvEvent.EventId <= w.LastEventId)
            {
                return KvApplyResult.Stale;
            }

            if (w.NeedsResync || kvEvent.EventId != w.LastEventId + 1)
            {
                w.NeedsResync = true;
                w.Buffered ??= [];
                if (w.Buffered.Count < ResyncBufferCapacity)
                {
                    w.Buffered.Add(kvEvent);
                }

                return KvApplyResult.Gap;
            }

            ApplyData(w, kvEvent.Data);
            w.LastEventId = kvEvent.EventId;
            return KvApplyResult.Applied;
        }
    }

    /// <summary>Lists <paramref name="target"/> (registering it if new) as needing a dump, e.g. a worker found by a router that just started.</summary>
    public void RequestResync(RoutingTarget target)
    {
        lock (_gate)
        {
            GetOrAdd(target).NeedsResync = true;
        }
    }

    /// <summary>
    /// Replaces <paramref name="target"/>'s blocks with <paramref name="dump"/>'s, sets its last event id
    /// to the dump's, then applies the events kept since the resync began that come after it, in id order.
    /// The worker leaves <see cref="WorkersNeedingResync"/> unless those events still have a hole (then the
    /// kept events are dropped and it waits for a later dump).
    /// </summary>
    public void LoadDump(RoutingTarget target, KvEventDump dump)
    {
        ArgumentNullException.ThrowIfNull(dump);
        lock (_gate)
        {
            WorkerEntry w = GetOrAdd(target);
            ClearWorker(w);
            foreach (KvStoredData group in dump.Stored)
            {
                Store(w, group);
            }

            w.LastEventId = dump.LastEventId;
            w.NeedsResync = false;
            List<KvEvent>? buffered = w.Buffered;
            w.Buffered = null;
            if (buffered is null)
            {
                return;
            }

            buffered.Sort(static (a, b) => a.EventId.CompareTo(b.EventId));
            foreach (KvEvent e in buffered)
            {
                if (e.EventId <= w.LastEventId)
                {
                    continue;
                }

                if (e.EventId != w.LastEventId + 1)
                {
                    // A hole after the dump: those events were lost; only a later dump can fill it.
                    w.NeedsResync = true;
                    break;
                }

                ApplyData(w, e.Data);
                w.LastEventId = e.EventId;
            }
        }
    }

    /// <summary>
    /// Writes into <paramref name="destination"/>, for each worker holding the first of
    /// <paramref name="sequenceHashes"/>, how many leading hashes it holds (stopping at its first miss).
    /// Allocates nothing. Walks the request's tracked blocks only (<see cref="TrackedBlocks"/>: all of the first 64, then
    /// ever sparser), then finds each worker's last held block between its last tracked hit and first tracked miss by
    /// binary search: exact while a worker's cache is prefix-closed, which LRU eviction keeps it (a block is never
    /// evicted before the blocks after it, which were used no earlier); O(tracked blocks x words of workers still
    /// matching + log(step) per worker), where walking every block of a 6,000-block prompt held by one worker cost a
    /// thousand worker's decision a third of a millisecond.
    /// </summary>
    public void FindMatches(ReadOnlySpan<ulong> sequenceHashes, OverlapScores destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        destination.Clear();
        lock (_gate)
        {
            int count = TrackedBlocks.Count(sequenceHashes.Length);
            if (_tracked.Length < count)
            {
                _tracked = new ulong[count * 2];
                _positions = new int[count * 2];
            }

            count = TrackedBlocks.Select(sequenceHashes, _tracked, _positions);
            _table.Match(_tracked.AsSpan(0, count));
            foreach (int slot in _table.MatchedSlots)
            {
                int held = _table.DepthOf(slot);
                int depth = held == count ? sequenceHashes.Length : Boundary(sequenceHashes, slot, _positions[held - 1], _positions[held]);
                destination.Add(_slotWorkers[slot], depth);
            }
        }
    }

    // Under _gate: the slot holds the block at position `held` and not the one at `missing`; under prefix closure the
    // blocks it holds in between are a run from `held` on: a binary search finds its end. Returns the leading blocks held.
    private int Boundary(ReadOnlySpan<ulong> sequenceHashes, int slot, int held, int missing)
    {
        while (missing - held > 1)
        {
            int mid = held + ((missing - held) >> 1);
            if (_table.Contains(sequenceHashes[mid], slot))
            {
                held = mid;
            }
            else
            {
                missing = mid;
            }
        }

        return held + 1;
    }

    /// <summary>As <see cref="FindMatches(ReadOnlySpan{ulong}, OverlapScores)"/>, into a new result.</summary>
    public OverlapScores FindMatches(ReadOnlySpan<ulong> sequenceHashes)
    {
        var scores = new OverlapScores();
        FindMatches(sequenceHashes, scores);
        return scores;
    }

    private WorkerEntry GetOrAdd(RoutingTarget target)
    {
        if (_workers.TryGetValue(target, out WorkerEntry? w))
        {
            return w;
        }

        int slot = _freeSlots.Count > 0 ? _freeSlots.Pop() : _nextSlot++;
        if (slot >= _slotWorkers.Length)
        {
            Array.Resize(ref _slotWorkers, _slotWorkers.Length * 2);
        }

        _slotWorkers[slot] = target;
        w = new WorkerEntry(slot);
        _workers[target] = w;
        return w;
    }

    private void ApplyData(WorkerEntry w, KvEventData data)
    {
        switch (data)
        {
            case KvStoredData stored:
                Store(w, stored);
                break;
            case KvRemovedData removed:
                Remove(w, removed.BlockHashes);
                break;
            default:
                ClearWorker(w);
                break;
        }
    }

    // One table operation per block: the table's slot set is the worker's block set.
    private void Store(WorkerEntry w, KvStoredData stored)
    {
        IReadOnlyList<KvStoredBlock> blocks = stored.Blocks;
        ReadOnlySpan<KvStoredBlock> span = blocks switch
        {
            KvStoredBlock[] array => array,
            List<KvStoredBlock> list => CollectionsMarshal.AsSpan(list),
            _ => default,
        };

        int added = 0;
        if (span.Length == blocks.Count)
        {
            foreach (ref readonly KvStoredBlock block in span)
            {
                added += _table.Add(block.BlockHash, w.Slot) ? 1 : 0;
            }
        }
        else
        {
            for (int i = 0; i < blocks.Count; i++)
            {
                added += _table.Add(blocks[i].BlockHash, w.Slot) ? 1 : 0;
            }
        }

        w.BlockCount += added;
    }

    private void Remove(WorkerEntry w, IReadOnlyList<ulong> hashes)
    {
        ReadOnlySpan<ulong> span = hashes switch
        {
            ulong[] array => array,
            List<ulong> list => CollectionsMarshal.AsSpan(list),
            _ => default,
        };

        int removed = 0;
        if (span.Length == hashes.Count)
        {
            foreach (ulong hash in span)
            {
                removed += _table.Remove(hash, w.Slot) ? 1 : 0;
            }
        }
        else
        {
            for (int i = 0; i < hashes.Count; i++)
            {
                removed += _table.Remove(hashes[i], w.Slot) ? 1 : 0;
            }
        }

        w.BlockCount -= removed;
    }

    private void ClearWorker(WorkerEntry w)
    {
        if (w.BlockCount > 0)
        {
            _table.RemoveSlot(w.Slot);
            w.BlockCount = 0;
        }
    }

    private sealed class WorkerEntry(int slot)
    {
        public int Slot { get; } = slot;

        /// <summary>Blocks the worker holds (the table's entries listing its slot).</summary>
        public int BlockCount { get; set; }

        public ulong LastEventId { get; set; }

        public bool NeedsResync { get; set; }

        public List<KvEvent>? Buffered { get; set; }
    }
}

namespace Dynamo.Llm.Kv;

/// <summary>
/// The KV block manager: a fixed pool of block ids, reference counts, the prefix cache (chained block
/// hash -> block) and least-recently-used eviction, with every change of the cached set published on a
/// <see cref="KvEventLog"/>. Model-free: the engine stores tensors in the blocks it hands out, the mocker
/// stores nothing, and both behave the same way.
/// <para>
/// Invariants (checked by <see cref="CheckInvariants"/>): a block is either in use (reference count &gt; 0)
/// or on the free list, never both; a block is in the hash map under at most one hash and the map has no
/// other entries; the event stream replayed gives exactly the set of hashes in the map.
/// </para>
/// <para>
/// Free list order: blocks without a hash at the front (reused first, nothing is lost), cached blocks
/// behind them in the order they were released (least recently used first). A sequence releases its
/// blocks last block first, so the tail of a prefix is evicted before its head.
/// </para>
/// Not thread-safe: one scheduler thread owns it.
/// </summary>
public sealed class KvBlockPool
{
    private const int None = -1;

    private readonly int[] _refCount;
    private readonly ulong[] _hash;
    private readonly bool[] _hashed;
    private readonly ulong[] _localHash;
    private readonly ulong[] _parent;
    private readonly bool[] _hasParent;
    private readonly int[] _prev;
    private readonly int[] _next;
    private readonly bool[] _onFreeList;
    private readonly Dictionary<ulong, int> _byHash = [];
    private readonly KvEventLog? _events;
    private readonly List<ulong> _evicted = [];
    private readonly List<KvStoredBlock> _stored = [];
    private int _head = None;
    private int _tail = None;

    /// <param name="blockCount">Blocks in the pool.</param>
    /// <param name="blockSize">Tokens per block.</param>
    /// <param name="events">Where changes of the cached set are published; null publishes nothing.</param>
    /// <param name="prefixCaching">False: full blocks are never cached nor reused across sequences.</param>
    public KvBlockPool(int blockCount, int blockSize, KvEventLog? events = null, bool prefixCaching = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        BlockCount = blockCount;
        BlockSize = blockSize;
        PrefixCaching = prefixCaching;
        _events = events;
        _refCount = new int[blockCount];
        _hash = new ulong[blockCount];
        _hashed = new bool[blockCount];
        _localHash = new ulong[blockCount];
        _parent = new ulong[blockCount];
        _hasParent = new bool[blockCount];
        _prev = new int[blockCount];
        _next = new int[blockCount];
        _onFreeList = new bool[blockCount];
        for (int b = 0; b < blockCount; b++)
        {
            PushBack(b);
        }
    }

    public int BlockCount { get; }

    public int BlockSize { get; }

    public bool PrefixCaching { get; }

    /// <summary>Blocks no sequence uses (some of them still cached).</summary>
    public int FreeCount { get; private set; }

    /// <summary>Blocks in use by at least one sequence.</summary>
    public int UsedCount => BlockCount - FreeCount;

    /// <summary>Blocks that hold a cached prefix (in use or free).</summary>
    public int CachedCount => _byHash.Count;

    /// <summary>The events published so far, or null.</summary>
    public KvEventLog? Events => _events;

    /// <summary>Blocks needed to hold <paramref name="tokens"/> tokens.</summary>
    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>True when <paramref name="sequenceHash"/> is in the prefix cache.</summary>
    public bool IsCached(ulong sequenceHash) => _byHash.ContainsKey(sequenceHash);

    /// <summary>How many leading blocks of a sequence (given by their chained hashes) are cached. No side effects.</summary>
    public int CachedPrefixBlocks(ReadOnlySpan<ulong> sequenceHashes)
    {
        if (!PrefixCaching)
        {
            return 0;
        }

        int n = 0;
        while (n < sequenceHashes.Length && _byHash.ContainsKey(sequenceHashes[n]))
        {
            n++;
        }

        return n;
    }

    /// <summary>
    /// Appends the cached blocks of <paramref name="sequenceHashes"/> (all of which must be cached, see
    /// <see cref="CachedPrefixBlocks"/>) to <paramref name="table"/>, taking a reference on each.
    /// </summary>
    public void AcquireCached(ReadOnlySpan<ulong> sequenceHashes, BlockTable table)
    {
        foreach (ulong h in sequenceHashes)
        {
            if (!_byHash.TryGetValue(h, out int b))
            {
                throw new InvalidOperationException($"block hash {h:x16} is not cached");
            }

            Take(b);
            table.Add(b);
        }
    }

    /// <summary>
    /// Appends <paramref name="count"/> fresh blocks to <paramref name="table"/>, evicting cached free blocks
    /// (least recently used first) when no uncached block is left. All or nothing: false when fewer than
    /// <paramref name="count"/> blocks are free, with nothing changed.
    /// </summary>
    public bool TryAllocate(int count, BlockTable table)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count > FreeCount)
        {
            return false;
        }

        _evicted.Clear();
        for (int i = 0; i < count; i++)
        {
            int b = _head;
            Take(b);
            if (_hashed[b])
            {
                _byHash.Remove(_hash[b]);
                _hashed[b] = false;
                _evicted.Add(_hash[b]);
            }

            table.Add(b);
        }

        if (_evicted.Count > 0)
        {
            _events?.Append(new KvRemovedData([.. _evicted]));
        }

        return true;
    }

    /// <summary>
    /// Ensures <paramref name="table"/> has blocks for <paramref name="tokens"/> tokens, allocating the missing
    /// ones (see <see cref="TryAllocate"/>).
    /// </summary>
    public bool TryReserve(BlockTable table, int tokens)
    {
        int missing = BlocksFor(tokens) - table.Count;
        return missing <= 0 || TryAllocate(missing, table);
    }

    /// <summary>
    /// Registers full blocks <paramref name="from"/>..<paramref name="to"/>-1 of a sequence in the prefix cache:
    /// block i of <paramref name="table"/> gets <paramref name="sequenceHashes"/>[i] (its parent being hash
    /// i-1). A block whose hash another block already holds stays uncached (same content, first one wins);
    /// a block that already has its hash (taken from the cache) is left as is. Publishes one stored event per
    /// run of newly cached blocks.
    /// </summary>
    public void Commit(BlockTable table, ReadOnlySpan<ulong> sequenceHashes, ReadOnlySpan<ulong> localHashes, int from, int to)
    {
        if (!PrefixCaching || from >= to)
        {
            return;
        }

        if (to > table.Count || to > sequenceHashes.Length || to > localHashes.Length || from < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(to), $"blocks {from}..{to - 1} of a table of {table.Count} with {sequenceHashes.Length} hashes");
        }

        _stored.Clear();
        int runStart = from;
        for (int i = from; i < to; i++)
        {
            int b = table[i];
            ulong h = sequenceHashes[i];
            bool added = false;
            if (!_hashed[b] && !_byHash.ContainsKey(h))
            {
                _hashed[b] = true;
                _hash[b] = h;
                _localHash[b] = localHashes[i];
                _hasParent[b] = i > 0;
                _parent[b] = i > 0 ? sequenceHashes[i - 1] : 0;
                _byHash.Add(h, b);
                _stored.Add(new KvStoredBlock(h, localHashes[i]));
                added = true;
            }

            if (!added)
            {
                Flush(sequenceHashes, runStart);
                runStart = i + 1;
            }
        }

        Flush(sequenceHashes, runStart);
    }

    private void Flush(ReadOnlySpan<ulong> sequenceHashes, int runStart)
    {
        if (_stored.Count == 0)
        {
            return;
        }

        ulong? parent = runStart > 0 ? sequenceHashes[runStart - 1] : null;
        _events?.Append(new KvStoredData(parent, [.. _stored]));
        _stored.Clear();
    }

    /// <summary>Drops the references of <paramref name="table"/> (last block first) and empties it.</summary>
    public void Release(BlockTable table)
    {
        for (int i = table.Count - 1; i >= 0; i--)
        {
            int b = table[i];
            if (_refCount[b] <= 0)
            {
                throw new InvalidOperationException($"block {b} released more often than taken");
            }

            if (--_refCount[b] == 0)
            {
                if (_hashed[b])
                {
                    PushBack(b);
                }
                else
                {
                    PushFront(b);
                }
            }
        }

        table.Clear();
    }

    /// <summary>Forgets every cached prefix (blocks in use keep their contents but are no longer shared). Publishes <c>cleared</c>.</summary>
    public void ClearCache()
    {
        foreach (int b in _byHash.Values)
        {
            _hashed[b] = false;
        }

        _byHash.Clear();
        _events?.Append(KvClearedData.Instance);
    }

    /// <summary>The cached set as stored-data groups (one per block, parent first), as of the log's last event id.</summary>
    public KvEventDump Dump(long workerId)
    {
        var groups = new List<KvStoredData>(_byHash.Count);
        var emitted = new HashSet<ulong>();
        foreach (int b in _byHash.Values)
        {
            Emit(b);
        }

        return new KvEventDump(workerId, _events?.LastEventId ?? 0, groups);

        void Emit(int b)
        {
            if (!emitted.Add(_hash[b]))
            {
                return;
            }

            if (_hasParent[b] && _byHash.TryGetValue(_parent[b], out int parent))
            {
                Emit(parent);
            }

            groups.Add(new KvStoredData(_hasParent[b] ? _parent[b] : null, [new KvStoredBlock(_hash[b], _localHash[b])]));
        }
    }

    /// <summary>Throws <see cref="InvalidOperationException"/> when an invariant of the pool does not hold (for tests).</summary>
    public void CheckInvariants()
    {
        int free = 0;
        var seen = new bool[BlockCount];
        for (int b = _head, prev = None; b != None; prev = b, b = _next[b])
        {
            Check(!seen[b], $"block {b} twice on the free list");
            Check(_prev[b] == prev, $"free list broken at block {b}");
            Check(_refCount[b] == 0, $"block {b} is free with {_refCount[b]} references");
            Check(_onFreeList[b], $"block {b} on the free list is not marked so");
            seen[b] = true;
            free++;
        }

        Check(free == FreeCount, $"free list has {free} blocks, counted {FreeCount}");
        for (int b = 0; b < BlockCount; b++)
        {
            Check(seen[b] || _refCount[b] > 0, $"block {b} is neither free nor used (leaked)");
            Check(_refCount[b] >= 0, $"block {b} has {_refCount[b]} references");
            Check(!_hashed[b] || (_byHash.TryGetValue(_hash[b], out int owner) && owner == b), $"block {b} is hashed but not in the map");
        }

        foreach ((ulong h, int b) in _byHash)
        {
            Check(_hashed[b] && _hash[b] == h, $"hash {h:x16} maps to block {b}, which does not hold it");
        }

        static void Check(bool ok, string message)
        {
            if (!ok)
            {
                throw new InvalidOperationException(message);
            }
        }
    }

    /// <summary>The reference count of a block (for tests and diagnostics).</summary>
    public int ReferenceCount(int blockId) => _refCount[blockId];

    /// <summary>The chained hashes now in the prefix cache.</summary>
    public IReadOnlyCollection<ulong> CachedHashes => _byHash.Keys;

    private void Take(int b)
    {
        if (_refCount[b]++ == 0)
        {
            Unlink(b);
        }
    }

    private void Unlink(int b)
    {
        int p = _prev[b], n = _next[b];
        if (p == None)
        {
            _head = n;
        }
        else
        {
            _next[p] = n;
        }

        if (n == None)
        {
            _tail = p;
        }
        else
        {
            _prev[n] = p;
        }

        _onFreeList[b] = false;
        FreeCount--;
    }

    private void PushBack(int b)
    {
        _prev[b] = _tail;
        _next[b] = None;
        if (_tail == None)
        {
            _head = b;
        }
        else
        {
            _next[_tail] = b;
        }

        _tail = b;
        _onFreeList[b] = true;
        FreeCount++;
    }

    private void PushFront(int b)
    {
        _prev[b] = None;
        _next[b] = _head;
        if (_head == None)
        {
            _tail = b;
        }
        else
        {
            _prev[_head] = b;
        }

        _head = b;
        _onFreeList[b] = true;
        FreeCount++;
    }
}

using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Dynamo.Llm.Routing;

/// <summary>
/// Block sequence hash to the set of worker slots that hold it. Because a sequence hash names a block
/// together with its whole prefix, a flat map is a radix tree: a worker holds the first k blocks of a
/// request when it is in the set of each of the request's first k hashes. Not thread-safe: the owner locks.
/// <para>
/// Used as a set (<see cref="Add"/>, <see cref="Remove"/>, <see cref="RemoveSlot"/>: the KV index) or as a multiset
/// (<see cref="Increment"/>, <see cref="Decrement"/>: the router's in-flight table, where a block routed
/// to a worker by several requests in flight counts once per request). In multiset use an entry's
/// <c>Multi</c> bitmap marks the slots 0..63 whose count is above one; those counts (and every count of a
/// slot from 64 on above one) sit in a side map, so a count of one costs one probe and nothing more.
/// </para>
/// <para>
/// Layout, for lookup speed and a heap the GC need not scan: one open-addressing table (linear probing,
/// Fibonacci hashing of the key, at most 3/4 full, backward-shift deletion, no tombstones) of
/// reference-free entries {hash, slots 0..63 as a bitmap, Multi, spill index}. Slots from 64 on live in a spill
/// bitmap (one per entry that needs one). An entry is in use exactly when its set is non-empty, so no key
/// value is reserved. Matching ANDs bitmaps: one word per block with up to 64 workers.
/// </para>
/// </summary>
internal sealed class PrefixTable
{
    private const int MinCapacity = 16;

    private Entry[] _entries;
    private int _mask;
    private int _shift;
    private int _count;
    private ulong[]?[] _spills = [];
    private readonly Stack<int> _freeSpills = new();
    private readonly Dictionary<(ulong Hash, int Slot), int> _counts = [];
    private int _spillCount;
    private int _words = 1;
    private ulong[] _alive = new ulong[1];
    private int[] _liveWords = new int[1];
    private int[] _depths = new int[64];
    private int[] _matched = new int[64];
    private int _matchedCount;

    public PrefixTable(int capacity = 0)
    {
        int size = MinCapacity;
        while (size - (size >> 2) < capacity)
        {
            size *= 2;
        }

        _entries = new Entry[size];
        SetSize(size);
    }

    /// <summary>Distinct hashes held by at least one slot.</summary>
    public int Count => _count;

    /// <summary>The slots of the last <see cref="Match"/> that hold at least the request's first block.</summary>
    public ReadOnlySpan<int> MatchedSlots => _matched.AsSpan(0, _matchedCount);

    /// <summary>Adds <paramref name="slot"/> under <paramref name="hash"/>; true when it was not there.</summary>
    public bool Add(ulong hash, int slot)
    {
        // Not folded into one expression: _entries must be read after FindOrClaim, which may grow it.
        int i = FindOrClaim(hash, slot);
        return SetBit(ref _entries[i], slot);
    }

    /// <summary>
    /// Multiset use: adds one occurrence of <paramref name="slot"/> under <paramref name="hash"/>; true when the slot had none.
    /// A new hash keeps <paramref name="payload"/> while it is held (<see cref="PayloadOf"/>: the ledger's block weight).
    /// </summary>
    public bool Increment(ulong hash, int slot, int payload = 0)
    {
        int i = FindOrClaim(hash, slot);
        if (_entries[i].IsEmpty)
        {
            _entries[i].Payload = payload;
        }

        if (SetBit(ref _entries[i], slot))
        {
            return true;
        }

        // Counts above one: 2 is the first; the Multi bit (slots 0..63) says a count is kept.
        ref int count = ref CollectionsMarshal.GetValueRefOrAddDefault(_counts, (hash, slot), out bool exists);
        count = exists ? count + 1 : 2;
        if (slot < 64)
        {
            _entries[i].Multi |= 1UL << slot;
        }

        return false;
    }

    /// <summary>Multiset use: removes one occurrence; true when the slot no longer appears under the hash.</summary>
    public bool Decrement(ulong hash, int slot)
    {
        int i = Find(hash);
        if (i < 0)
        {
            return false;
        }

        ref Entry e = ref _entries[i];
        if (slot < 64 ? (e.Multi & (1UL << slot)) != 0 : _counts.ContainsKey((hash, slot)))
        {
            ref int count = ref CollectionsMarshal.GetValueRefOrNullRef(_counts, (hash, slot));
            if (--count == 1)
            {
                _counts.Remove((hash, slot));
                if (slot < 64)
                {
                    e.Multi &= ~(1UL << slot);
                }
            }

            return false;
        }

        if (!ClearBit(ref e, slot))
        {
            return false;
        }

        if (e.IsEmpty)
        {
            DeleteAt(i);
        }

        return true;
    }

    /// <summary>Removes <paramref name="slot"/> from <paramref name="hash"/>'s set; true when it was there.</summary>
    public bool Remove(ulong hash, int slot)
    {
        int i = Find(hash);
        if (i < 0 || !ClearBit(ref _entries[i], slot))
        {
            return false;
        }

        if (_entries[i].IsEmpty)
        {
            DeleteAt(i);
        }

        return true;
    }

    /// <summary>Multiset use: removes every occurrence of <paramref name="slot"/> under <paramref name="hash"/>; true when it was there.</summary>
    public bool RemoveAll(ulong hash, int slot)
    {
        int i = Find(hash);
        if (i < 0)
        {
            return false;
        }

        if (_counts.Remove((hash, slot)) && slot < 64)
        {
            _entries[i].Multi &= ~(1UL << slot);
        }

        if (!ClearBit(ref _entries[i], slot))
        {
            return false;
        }

        if (_entries[i].IsEmpty)
        {
            DeleteAt(i);
        }

        return true;
    }

    /// <summary>The payload <paramref name="hash"/> was added with (<see cref="Increment"/>); 0 when no slot holds it.</summary>
    public int PayloadOf(ulong hash)
    {
        int i = Find(hash);
        return i < 0 ? 0 : _entries[i].Payload;
    }

    /// <summary>Whether <paramref name="slot"/> is in <paramref name="hash"/>'s set.</summary>
    public bool Contains(ulong hash, int slot)
    {
        int i = Find(hash);
        return i >= 0 && (Word(in _entries[i], slot >> 6) & (1UL << slot)) != 0;
    }

    /// <summary>Removes <paramref name="slot"/> from every set (a scan of the whole table); returns how many held it.</summary>
    public int RemoveSlot(int slot)
    {
        int removed = 0;
        Entry[] entries = _entries;
        for (int i = 0; i < entries.Length; i++)
        {
            if (entries[i].IsEmpty || !ClearBit(ref entries[i], slot))
            {
                continue;
            }

            removed++;
            if (entries[i].IsEmpty)
            {
                // The shift may move a later entry here: look at this bucket again.
                DeleteAt(i);
                i--;
            }
        }

        return removed;
    }

    public void Clear()
    {
        Array.Clear(_entries);
        Array.Clear(_spills);
        _freeSpills.Clear();
        _counts.Clear();
        _spillCount = 0;
        _count = 0;
    }

    /// <summary>
    /// For every slot, how many leading hashes of <paramref name="hashes"/> it holds (stopping at its first
    /// miss). The slots with at least one are in <see cref="MatchedSlots"/>, their depth from
    /// <see cref="DepthOf"/>, both valid until the next call. O(request blocks x slot words), no allocation.
    /// </summary>
    public int Match(ReadOnlySpan<ulong> hashes)
    {
        _matchedCount = 0;
        if (hashes.Length == 0 || _count == 0)
        {
            return 0;
        }

        int first = Find(hashes[0]);
        if (first < 0)
        {
            return 0;
        }

        int words = _words;
        ulong[] alive = _alive;
        for (int w = 0; w < words; w++)
        {
            ulong bits = Word(in _entries[first], w);
            alive[w] = bits;
            while (bits != 0)
            {
                _matched[_matchedCount++] = (w << 6) | BitOperations.TrailingZeroCount(bits);
                bits &= bits - 1;
            }
        }

        int depth = 1;
        if (words == 1)
        {
            // Up to 64 slots: one AND per block.
            ulong live = alive[0];
            for (; depth < hashes.Length; depth++)
            {
                int at = Find(hashes[depth]);
                if (at < 0)
                {
                    break;
                }

                ulong next = live & _entries[at].Bits;
                Record(live & ~next, 0, depth);
                live = next;
                if (live == 0)
                {
                    break;
                }
            }

            Record(live, 0, depth);
        }
        else
        {
            // Only the words with a slot still matching are visited: after the first blocks of a long prompt
            // usually one or two of a thousand workers' sixteen words are left.
            int[] live = _liveWords;
            int liveCount = 0;
            for (int w = 0; w < words; w++)
            {
                if (alive[w] != 0)
                {
                    live[liveCount++] = w;
                }
            }

            for (; depth < hashes.Length && liveCount > 0; depth++)
            {
                int at = Find(hashes[depth]);
                if (at < 0)
                {
                    break;
                }

                int kept = 0;
                for (int k = 0; k < liveCount; k++)
                {
                    int w = live[k];
                    ulong next = alive[w] & Word(in _entries[at], w);
                    Record(alive[w] & ~next, w, depth);
                    alive[w] = next;
                    if (next != 0)
                    {
                        live[kept++] = w;
                    }
                }

                liveCount = kept;
            }

            for (int k = 0; k < liveCount; k++)
            {
                Record(alive[live[k]], live[k], depth);
            }
        }

        return _matchedCount;
    }

    /// <summary>Leading blocks held by a slot of <see cref="MatchedSlots"/> in the last <see cref="Match"/>.</summary>
    public int DepthOf(int slot) => _depths[slot];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Record(ulong bits, int word, int depth)
    {
        while (bits != 0)
        {
            _depths[(word << 6) | BitOperations.TrailingZeroCount(bits)] = depth;
            bits &= bits - 1;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Home(ulong hash) => (int)((hash * 0x9E3779B97F4A7C15UL) >> _shift);

    // The bucket of hash, or the empty bucket where it goes (counted; the caller sets a bit at once).
    private int FindOrClaim(ulong hash, int slot)
    {
        EnsureSlot(slot);
        if (_count >= _entries.Length - (_entries.Length >> 2))
        {
            Grow();
        }

        Entry[] entries = _entries;
        int i = Home(hash);
        while (true)
        {
            ref Entry e = ref entries[i];
            if (e.IsEmpty)
            {
                e.Key = hash;
                _count++;
                return i;
            }

            if (e.Key == hash)
            {
                return i;
            }

            i = (i + 1) & _mask;
        }
    }

    private int Find(ulong hash)
    {
        Entry[] entries = _entries;
        int i = Home(hash);
        while (true)
        {
            ref Entry e = ref entries[i];
            if (e.IsEmpty)
            {
                return -1;
            }

            if (e.Key == hash)
            {
                return i;
            }

            i = (i + 1) & _mask;
        }
    }

    private ulong Word(in Entry e, int word) =>
        word == 0 ? e.Bits : e.Spill != 0 && _spills[e.Spill - 1] is { } spill && word - 1 < spill.Length ? spill[word - 1] : 0;

    private bool SetBit(ref Entry e, int slot)
    {
        ulong bit = 1UL << slot;
        if (slot < 64)
        {
            bool fresh = (e.Bits & bit) == 0;
            e.Bits |= bit;
            return fresh;
        }

        if (e.Spill == 0)
        {
            e.Spill = NewSpill();
        }

        ulong[] spill = _spills[e.Spill - 1]!;
        int w = (slot >> 6) - 1;
        if (w >= spill.Length)
        {
            Array.Resize(ref spill, _words - 1);
            _spills[e.Spill - 1] = spill;
        }

        bool added = (spill[w] & bit) == 0;
        spill[w] |= bit;
        return added;
    }

    private bool ClearBit(ref Entry e, int slot)
    {
        ulong bit = 1UL << slot;
        if (slot < 64)
        {
            bool had = (e.Bits & bit) != 0;
            e.Bits &= ~bit;
            return had;
        }

        int w = (slot >> 6) - 1;
        if (e.Spill == 0 || _spills[e.Spill - 1] is not { } spill || w >= spill.Length || (spill[w] & bit) == 0)
        {
            return false;
        }

        spill[w] &= ~bit;
        if (spill.AsSpan().IndexOfAnyExcept(0UL) < 0)
        {
            Array.Clear(spill);
            _freeSpills.Push(e.Spill);
            e.Spill = 0;
        }

        return true;
    }

    private int NewSpill()
    {
        if (_freeSpills.Count > 0)
        {
            int reused = _freeSpills.Pop();
            _spills[reused - 1] ??= new ulong[_words - 1];
            return reused;
        }

        if (_spillCount == _spills.Length)
        {
            Array.Resize(ref _spills, Math.Max(16, _spills.Length * 2));
        }

        _spills[_spillCount++] = new ulong[_words - 1];
        return _spillCount;
    }

    // Backward-shift deletion: later entries of the probe run move up so that no lookup meets a hole.
    private void DeleteAt(int hole)
    {
        Entry[] entries = _entries;
        int j = hole;
        while (true)
        {
            j = (j + 1) & _mask;
            if (entries[j].IsEmpty)
            {
                break;
            }

            int home = Home(entries[j].Key);

            // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
            bool stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
            if (!stays)
            {
                entries[hole] = entries[j];
                hole = j;
            }
        }

        entries[hole] = default;
        _count--;
    }

    private void Grow()
    {
        Entry[] old = _entries;
        _entries = new Entry[old.Length * 2];
        SetSize(_entries.Length);
        foreach (Entry e in old)
        {
            if (e.IsEmpty)
            {
                continue;
            }

            int i = Home(e.Key);
            while (!_entries[i].IsEmpty)
            {
                i = (i + 1) & _mask;
            }

            _entries[i] = e;
        }
    }

    private void SetSize(int size)
    {
        _mask = size - 1;
        _shift = 64 - BitOperations.Log2((uint)size);
    }

    private void EnsureSlot(int slot)
    {
        if (slot >= _depths.Length)
        {
            int size = _depths.Length;
            while (size <= slot)
            {
                size *= 2;
            }

            Array.Resize(ref _depths, size);
            Array.Resize(ref _matched, size);
        }

        int words = (slot >> 6) + 1;
        if (words > _words)
        {
            _words = words;
            _alive = new ulong[words];
            _liveWords = new int[words];
        }
    }

    /// <summary>One hash, its slot set and its payload (no references, so the GC never scans the table; 32 bytes, so one never straddles two cache lines).</summary>
    private struct Entry
    {
        public ulong Key;
        public ulong Bits;
        public ulong Multi;
        public int Spill;
        public int Payload;

        public readonly bool IsEmpty => Bits == 0 && Spill == 0;
    }
}

using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Dynamo.Llm.Routing;

/// <summary>
/// Block sequence hash to the worker slots that hold it (a multiset: a slot may appear more than once,
/// which the router's in-flight table uses as a reference count). Because a sequence hash names a block
/// together with its whole prefix, a flat map is a radix tree: a worker holds the first k blocks of a
/// request when it appears under each of the request's first k hashes. Not thread-safe: the owner locks.
/// </summary>
internal sealed class PrefixTable
{
    private readonly Dictionary<ulong, Node> _nodes;
    private int[] _stamps = new int[64];
    private int[] _matched = new int[64];
    private int _matchedCount;
    private int _generation;
    private int _matchedBase;

    public PrefixTable(int capacity = 0) => _nodes = new Dictionary<ulong, Node>(capacity);

    /// <summary>Distinct hashes held by at least one slot.</summary>
    public int Count => _nodes.Count;

    /// <summary>The slots of the last <see cref="Match"/> that hold at least the request's first block.</summary>
    public ReadOnlySpan<int> MatchedSlots => _matched.AsSpan(0, _matchedCount);

    /// <summary>Adds one occurrence of <paramref name="slot"/> under <paramref name="hash"/>; true when the slot had none before.</summary>
    public bool Add(ulong hash, int slot)
    {
        EnsureSlot(slot);
        ref Node node = ref CollectionsMarshal.GetValueRefOrAddDefault(_nodes, hash, out _);
        bool fresh = node.IndexOf(slot) < 0;
        node.Append(slot);
        return fresh;
    }

    /// <summary>
    /// Adds <paramref name="slot"/> under <paramref name="hash"/> for a caller that knows the slot is not
    /// there yet (the index: its per-worker set says so).
    /// </summary>
    public void AddNew(ulong hash, int slot)
    {
        EnsureSlot(slot);
        CollectionsMarshal.GetValueRefOrAddDefault(_nodes, hash, out _).Append(slot);
    }

    /// <summary>Removes one occurrence; true when the slot no longer appears under the hash.</summary>
    public bool Remove(ulong hash, int slot)
    {
        ref Node node = ref CollectionsMarshal.GetValueRefOrNullRef(_nodes, hash);
        if (Unsafe.IsNullRef(ref node))
        {
            return false;
        }

        int i = node.IndexOf(slot);
        if (i < 0)
        {
            return false;
        }

        node.RemoveAt(i);
        if (node.Count == 0)
        {
            _nodes.Remove(hash);
            return true;
        }

        return node.IndexOf(slot) < 0;
    }

    /// <summary>Whether <paramref name="slot"/> appears under <paramref name="hash"/>.</summary>
    public bool Contains(ulong hash, int slot)
    {
        ref Node node = ref CollectionsMarshal.GetValueRefOrNullRef(_nodes, hash);
        return !Unsafe.IsNullRef(ref node) && node.IndexOf(slot) >= 0;
    }

    public void Clear() => _nodes.Clear();

    /// <summary>
    /// For every slot, how many leading hashes of <paramref name="hashes"/> it holds (stopping at its first
    /// miss). The slots with at least one are in <see cref="MatchedSlots"/>, their depth from
    /// <see cref="DepthOf"/>, both valid until the next call. O(request blocks x slots per block), no allocation.
    /// </summary>
    public int Match(ReadOnlySpan<ulong> hashes)
    {
        _matchedCount = 0;
        if (hashes.Length == 0 || _nodes.Count == 0)
        {
            return 0;
        }

        if (_generation > int.MaxValue - hashes.Length - 2)
        {
            Array.Clear(_stamps);
            _generation = 0;
        }

        // A slot still matching after block i has stamp gen + i + 1; stamps of earlier calls are all <= gen.
        int gen = _generation;
        _generation = gen + hashes.Length + 1;
        int[] stamps = _stamps;
        ref Node first = ref CollectionsMarshal.GetValueRefOrNullRef(_nodes, hashes[0]);
        if (Unsafe.IsNullRef(ref first))
        {
            return 0;
        }

        for (int k = 0; k < first.Count; k++)
        {
            int slot = first.Get(k);
            if (stamps[slot] != gen + 1)
            {
                stamps[slot] = gen + 1;
                if (_matchedCount == _matched.Length)
                {
                    Array.Resize(ref _matched, _matched.Length * 2);
                }

                _matched[_matchedCount++] = slot;
            }
        }

        for (int i = 1; i < hashes.Length; i++)
        {
            ref Node node = ref CollectionsMarshal.GetValueRefOrNullRef(_nodes, hashes[i]);
            if (Unsafe.IsNullRef(ref node))
            {
                break;
            }

            int alive = 0;
            int before = gen + i, after = gen + i + 1;
            for (int k = 0; k < node.Count; k++)
            {
                int slot = node.Get(k);
                if (stamps[slot] == before)
                {
                    stamps[slot] = after;
                    alive++;
                }
            }

            if (alive == 0)
            {
                break;
            }
        }

        _matchedBase = gen;
        return _matchedCount;
    }

    /// <summary>Leading blocks held by a slot of <see cref="MatchedSlots"/> in the last <see cref="Match"/>.</summary>
    public int DepthOf(int slot) => _stamps[slot] - _matchedBase;

    private void EnsureSlot(int slot)
    {
        if (slot >= _stamps.Length)
        {
            int size = _stamps.Length;
            while (size <= slot)
            {
                size *= 2;
            }

            Array.Resize(ref _stamps, size);
        }
    }

    /// <summary>The slots under one hash: two inline (most blocks live on one or two workers), the rest spilled.</summary>
    private struct Node
    {
        public int Count;
        private int _s0;
        private int _s1;
        private int[]? _spill;

        public readonly int Get(int i) => i switch
        {
            0 => _s0,
            1 => _s1,
            _ => _spill![i - 2],
        };

        public readonly int IndexOf(int slot)
        {
            for (int i = 0; i < Count; i++)
            {
                if (Get(i) == slot)
                {
                    return i;
                }
            }

            return -1;
        }

        public void Append(int slot)
        {
            Set(Count, slot);
            Count++;
        }

        public void RemoveAt(int i)
        {
            Count--;
            if (i != Count)
            {
                Set(i, Get(Count));
            }

            if (Count <= 2)
            {
                _spill = null;
            }
        }

        private void Set(int i, int slot)
        {
            switch (i)
            {
                case 0:
                    _s0 = slot;
                    break;
                case 1:
                    _s1 = slot;
                    break;
                default:
                    if (_spill is null)
                    {
                        _spill = new int[2];
                    }
                    else if (i - 2 >= _spill.Length)
                    {
                        Array.Resize(ref _spill, _spill.Length * 2);
                    }

                    _spill[i - 2] = slot;
                    break;
            }
        }
    }
}

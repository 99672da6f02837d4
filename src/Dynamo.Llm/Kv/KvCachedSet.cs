using System.Collections.ObjectModel;

namespace Dynamo.Llm.Kv;

/// <summary>
/// A consumer's copy of one worker's cached blocks, rebuilt from its event stream: start from a
/// <see cref="KvEventDump"/> (or from nothing, before event 1) and <see cref="Apply"/> each later event.
/// Knows each block's sequence hash, local hash and parent, and the id of the last event applied.
/// Thread-safe; every method sees a state between two events.
/// </summary>
public sealed class KvCachedSet
{
    private readonly Lock _gate = new();
    private readonly Dictionary<ulong, Entry> _blocks = [];
    private ulong _lastEventId;
    private IReadOnlySet<ulong>? _snapshot;

    /// <summary>The id of the last event applied (or of the loaded dump); 0 at first.</summary>
    public ulong LastEventId
    {
        get
        {
            lock (_gate)
            {
                return _lastEventId;
            }
        }
    }

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _blocks.Count;
            }
        }
    }

    /// <summary>
    /// The cached blocks' sequence hashes: a read-only snapshot, kept until the next change (reading it
    /// twice without a change in between costs nothing).
    /// </summary>
    public IReadOnlySet<ulong> BlockHashes
    {
        get
        {
            lock (_gate)
            {
                return _snapshot ??= new ReadOnlySet<ulong>(new HashSet<ulong>(_blocks.Keys));
            }
        }
    }

    public bool Contains(ulong blockHash)
    {
        lock (_gate)
        {
            return _blocks.ContainsKey(blockHash);
        }
    }

    /// <summary>The parent of a cached block: null for the first block of a sequence. False if the block is not cached.</summary>
    public bool TryGetParent(ulong blockHash, out ulong? parent)
    {
        lock (_gate)
        {
            bool found = _blocks.TryGetValue(blockHash, out Entry entry);
            parent = entry.Parent;
            return found;
        }
    }

    /// <summary>The local hash (<c>tokens_hash</c>) of a cached block. False if the block is not cached.</summary>
    public bool TryGetTokensHash(ulong blockHash, out ulong tokensHash)
    {
        lock (_gate)
        {
            bool found = _blocks.TryGetValue(blockHash, out Entry entry);
            tokensHash = entry.TokensHash;
            return found;
        }
    }

    /// <summary>
    /// Applies <paramref name="kvEvent"/> if it is the next one (id = <see cref="LastEventId"/> + 1).
    /// An older or repeated id is <see cref="KvApplyResult.Stale"/> and ignored; a later one is
    /// <see cref="KvApplyResult.Gap"/> and changes nothing: the caller must catch up first.
    /// </summary>
    public KvApplyResult Apply(KvEvent kvEvent)
    {
        ArgumentNullException.ThrowIfNull(kvEvent);
        lock (_gate)
        {
            if (kvEvent.EventId <= _lastEventId)
            {
                return KvApplyResult.Stale;
            }

            if (kvEvent.EventId != _lastEventId + 1)
            {
                return KvApplyResult.Gap;
            }

            switch (kvEvent.Data)
            {
                case KvStoredData stored:
                    AddChain(stored);
                    break;
                case KvRemovedData removed:
                    foreach (ulong blockHash in removed.BlockHashes)
                    {
                        _blocks.Remove(blockHash);
                    }

                    break;
                case KvClearedData:
                    _blocks.Clear();
                    break;
                default:
                    throw new ArgumentException(
                        $"KV event {kvEvent.EventId} has data of unknown type {kvEvent.Data?.GetType().Name ?? "null"}.",
                        nameof(kvEvent));
            }

            _lastEventId = kvEvent.EventId;
            _snapshot = null;
            return KvApplyResult.Applied;
        }
    }

    /// <summary>Replaces the whole state with <paramref name="dump"/>'s blocks and last event id.</summary>
    public void Load(KvEventDump dump)
    {
        ArgumentNullException.ThrowIfNull(dump);
        lock (_gate)
        {
            _blocks.Clear();
            foreach (KvStoredData stored in dump.Stored)
            {
                AddChain(stored);
            }

            _lastEventId = dump.LastEventId;
            _snapshot = null;
        }
    }

    /// <summary>
    /// The current state as a dump: every cached block exactly once, in chains whose parents come in
    /// an earlier chain (or are not cached), so replaying it in order never meets an unknown parent
    /// that is cached. A producer can keep a <see cref="KvCachedSet"/> fed by its own
    /// <see cref="KvEventLog.Published"/> and answer resync requests with this.
    /// </summary>
    public KvEventDump ToDump(long workerId)
    {
        lock (_gate)
        {
            var children = new Dictionary<ulong, List<ulong>>();
            var roots = new List<ulong>();
            foreach ((ulong hash, Entry entry) in _blocks)
            {
                if (entry.Parent is { } parent && _blocks.ContainsKey(parent))
                {
                    if (!children.TryGetValue(parent, out List<ulong>? list))
                    {
                        children[parent] = list = [];
                    }

                    list.Add(hash);
                }
                else
                {
                    roots.Add(hash);
                }
            }

            var groups = new List<KvStoredData>();
            var done = new HashSet<ulong>();
            var pending = new Stack<ulong>();
            foreach (ulong root in roots)
            {
                pending.Push(root);
                EmitChains(pending, children, done, groups);
            }

            // Only a parent cycle (impossible for real hashes) leaves blocks unreached from a root.
            foreach (ulong hash in _blocks.Keys)
            {
                if (!done.Contains(hash))
                {
                    pending.Push(hash);
                    EmitChains(pending, children, done, groups);
                }
            }

            return new KvEventDump(workerId, _lastEventId, groups);
        }
    }

    private void EmitChains(
        Stack<ulong> pending, Dictionary<ulong, List<ulong>> children, HashSet<ulong> done, List<KvStoredData> groups)
    {
        while (pending.TryPop(out ulong start))
        {
            if (!done.Add(start))
            {
                continue;
            }

            var chain = new List<KvStoredBlock> { new(start, _blocks[start].TokensHash) };
            ulong current = start;
            while (children.TryGetValue(current, out List<ulong>? kids))
            {
                ulong next = 0;
                bool found = false;
                foreach (ulong kid in kids)
                {
                    if (done.Contains(kid))
                    {
                        continue;
                    }

                    if (!found)
                    {
                        next = kid;
                        found = true;
                    }
                    else
                    {
                        pending.Push(kid);
                    }
                }

                if (!found)
                {
                    break;
                }

                done.Add(next);
                chain.Add(new KvStoredBlock(next, _blocks[next].TokensHash));
                current = next;
            }

            groups.Add(new KvStoredData(_blocks[start].Parent, chain));
        }
    }

    private void AddChain(KvStoredData stored)
    {
        ulong? parent = stored.ParentHash;
        foreach (KvStoredBlock block in stored.Blocks)
        {
            _blocks[block.BlockHash] = new Entry(parent, block.TokensHash);
            parent = block.BlockHash;
        }
    }

    private readonly record struct Entry(ulong? Parent, ulong TokensHash);
}

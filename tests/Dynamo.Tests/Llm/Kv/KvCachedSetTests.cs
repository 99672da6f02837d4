using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Llm.Kv;

public sealed class KvCachedSetTests
{
    private static KvEvent Stored(ulong id, ulong? parent, params ulong[] hashes) =>
        new(1, id, new KvStoredData(parent, hashes.Select(h => new KvStoredBlock(h, h + 1000)).ToArray()));

    private static KvEvent Removed(ulong id, params ulong[] hashes) => new(1, id, new KvRemovedData(hashes));

    private static KvEvent Cleared(ulong id) => new(1, id, KvClearedData.Instance);

    private static ulong[] Sorted(IEnumerable<ulong> hashes) => hashes.Order().ToArray();

    [Fact]
    public void New_Empty()
    {
        var set = new KvCachedSet();

        Assert.Equal(0UL, set.LastEventId);
        Assert.Equal(0, set.Count);
        Assert.Empty(set.BlockHashes);
        Assert.False(set.Contains(0));
        Assert.False(set.TryGetParent(0, out _));
    }

    [Fact]
    public void Apply_Stored_AddsBlocksWithChainedParentsAndTokensHashes()
    {
        var set = new KvCachedSet();

        Assert.Equal(KvApplyResult.Applied, set.Apply(Stored(1, null, 10, 11, 12)));
        Assert.Equal(KvApplyResult.Applied, set.Apply(Stored(2, 11, 20)));

        Assert.Equal([10UL, 11UL, 12UL, 20UL], Sorted(set.BlockHashes));
        Assert.Equal(2UL, set.LastEventId);
        Assert.True(set.TryGetParent(10, out ulong? p10));
        Assert.True(set.TryGetParent(12, out ulong? p12));
        Assert.True(set.TryGetParent(20, out ulong? p20));
        Assert.Null(p10);
        Assert.Equal(11UL, p12);
        Assert.Equal(11UL, p20);
        Assert.True(set.TryGetTokensHash(12, out ulong tokens12));
        Assert.Equal(1012UL, tokens12);
    }

    [Fact]
    public void Apply_Removed_RemovesOnlyThoseAndIgnoresUnknown()
    {
        var set = new KvCachedSet();
        set.Apply(Stored(1, null, 10, 11, 12));

        Assert.Equal(KvApplyResult.Applied, set.Apply(Removed(2, 12, 10, 999)));

        Assert.Equal([11UL], Sorted(set.BlockHashes));
        Assert.True(set.Contains(11));
        Assert.False(set.Contains(10));
    }

    [Fact]
    public void Apply_Cleared_Empties()
    {
        var set = new KvCachedSet();
        set.Apply(Stored(1, null, 10, 11));

        Assert.Equal(KvApplyResult.Applied, set.Apply(Cleared(2)));

        Assert.Empty(set.BlockHashes);
        Assert.Equal(2UL, set.LastEventId);
    }

    [Fact]
    public void Apply_IdSkipsAhead_GapAndNothingChanges()
    {
        var set = new KvCachedSet();
        set.Apply(Stored(1, null, 10));

        Assert.Equal(KvApplyResult.Gap, set.Apply(Stored(3, 10, 30)));
        Assert.Equal(KvApplyResult.Gap, set.Apply(Cleared(5)));

        Assert.Equal([10UL], Sorted(set.BlockHashes));
        Assert.Equal(1UL, set.LastEventId);
        Assert.Equal(KvApplyResult.Applied, set.Apply(Stored(2, 10, 20)));
        Assert.Equal(KvApplyResult.Applied, set.Apply(Stored(3, 10, 30)));
    }

    [Fact]
    public void Apply_FirstEventNotOne_Gap()
    {
        Assert.Equal(KvApplyResult.Gap, new KvCachedSet().Apply(Stored(2, null, 10)));
    }

    [Fact]
    public void Apply_DuplicateOrOldId_StaleAndIgnored()
    {
        var set = new KvCachedSet();
        set.Apply(Stored(1, null, 10));
        set.Apply(Stored(2, 10, 20));

        Assert.Equal(KvApplyResult.Stale, set.Apply(Cleared(2)));
        Assert.Equal(KvApplyResult.Stale, set.Apply(Removed(1, 10)));
        Assert.Equal(KvApplyResult.Stale, set.Apply(Cleared(0)));

        Assert.Equal([10UL, 20UL], Sorted(set.BlockHashes));
        Assert.Equal(2UL, set.LastEventId);
    }

    [Fact]
    public void Load_Dump_ReplacesStateThenOnlyLaterEventsApply()
    {
        var set = new KvCachedSet();
        set.Apply(Stored(1, null, 1, 2, 3));
        var dump = new KvEventDump(1, 40,
        [
            new KvStoredData(null, [new KvStoredBlock(10, 110), new KvStoredBlock(11, 111)]),
            new KvStoredData(10, [new KvStoredBlock(12, 112)]),
        ]);

        set.Load(dump);

        Assert.Equal(40UL, set.LastEventId);
        Assert.Equal([10UL, 11UL, 12UL], Sorted(set.BlockHashes));
        Assert.True(set.TryGetParent(12, out ulong? p12));
        Assert.Equal(10UL, p12);
        Assert.Equal(KvApplyResult.Stale, set.Apply(Cleared(40)));
        Assert.Equal(KvApplyResult.Gap, set.Apply(Cleared(42)));
        Assert.Equal(KvApplyResult.Applied, set.Apply(Removed(41, 11)));
        Assert.Equal([10UL, 12UL], Sorted(set.BlockHashes));
    }

    [Fact]
    public void BlockHashes_NoChangeBetweenReads_SameSnapshotWhichLaterChangesDoNotTouch()
    {
        var set = new KvCachedSet();
        set.Apply(Stored(1, null, 10));

        IReadOnlySet<ulong> first = set.BlockHashes;
        Assert.Same(first, set.BlockHashes);
        set.Apply(Stored(2, 10, 20));

        Assert.Equal([10UL], Sorted(first));
        Assert.Equal([10UL, 20UL], Sorted(set.BlockHashes));
        Assert.False(first is ISet<ulong> { IsReadOnly: false });
    }

    [Fact]
    public void ToDump_Tree_ParentsBeforeChildrenAndLoadGivesSameSet()
    {
        var set = new KvCachedSet();
        set.Apply(Stored(1, null, 1, 2, 3, 4));
        set.Apply(Stored(2, 2, 5, 6));
        set.Apply(Stored(3, 2, 7));
        set.Apply(Stored(4, null, 8));
        set.Apply(Stored(5, 99, 9, 10));
        set.Apply(Removed(6, 3));

        KvEventDump dump = set.ToDump(workerId: 5);

        Assert.Equal(5L, dump.WorkerId);
        Assert.Equal(6UL, dump.LastEventId);
        ulong[] blocks = dump.Stored.SelectMany(g => g.Blocks).Select(b => b.BlockHash).ToArray();
        Assert.Equal(Sorted(set.BlockHashes), Sorted(blocks));
        Assert.Equal(blocks.Length, blocks.Distinct().Count());
        var emitted = new HashSet<ulong>();
        foreach (KvStoredData group in dump.Stored)
        {
            Assert.True(group.ParentHash is null || emitted.Contains(group.ParentHash.Value) || !set.Contains(group.ParentHash.Value));
            emitted.UnionWith(group.Blocks.Select(b => b.BlockHash));
        }

        var loaded = new KvCachedSet();
        loaded.Load(dump);
        AssertSameState(set, loaded);
    }

    [Fact]
    public void Replay_RandomProducerWithDroppedEvents_ConsumerResyncsToExactlyTheProducersSet()
    {
        var random = new Random(2024);
        var producer = new FakeProducer(workerId: 3, logCapacity: 16, random);
        var consumer = new KvCachedSet();
        int fromLog = 0;
        int fromDump = 0;
        var buffered = new List<KvEvent>();
        producer.Log.Published += e =>
        {
            // The transport loses some events and delays others.
            if (random.Next(10) != 0)
            {
                buffered.Add(e);
            }
        };

        for (int step = 0; step < 3_000; step++)
        {
            producer.Step();
            if (random.Next(4) != 0)
            {
                continue;
            }

            foreach (KvEvent e in buffered)
            {
                if (consumer.Apply(e) != KvApplyResult.Gap)
                {
                    continue;
                }

                if (producer.Log.TryGetSince(consumer.LastEventId, out IReadOnlyList<KvEvent> missed))
                {
                    fromLog++;
                    Assert.All(missed, m => Assert.Equal(KvApplyResult.Applied, consumer.Apply(m)));
                }
                else
                {
                    fromDump++;
                    consumer.Load(KvEventJson.DeserializeDump(KvEventJson.SerializeDump(producer.Dump())));
                }
            }

            buffered.Clear();
            Assert.True(consumer.LastEventId <= producer.Log.LastEventId);
            if (consumer.LastEventId == producer.Log.LastEventId)
            {
                producer.AssertConsumerMatches(consumer);
            }
        }

        Assert.True(producer.Log.TryGetSince(consumer.LastEventId, out IReadOnlyList<KvEvent> rest));
        foreach (KvEvent e in rest)
        {
            Assert.Equal(KvApplyResult.Applied, consumer.Apply(e));
        }

        producer.AssertConsumerMatches(consumer);
        Assert.True(fromLog > 0, "no resync from the log was exercised");
        Assert.True(fromDump > 0, "no resync from a dump was exercised");
    }

    [Fact]
    public async Task Apply_ConcurrentReaders_SeeOnlyWholeEvents()
    {
        var set = new KvCachedSet();
        using var done = new CancellationTokenSource();
        var failures = new List<string>();

        // Every event stores or removes the pair (2k, 2k+1) together: a reader must never see half a pair.
        Task[] readers = Enumerable.Range(0, 2).Select(r => Task.Run(() =>
        {
            while (!done.IsCancellationRequested)
            {
                IReadOnlySet<ulong> snapshot = set.BlockHashes;
                foreach (ulong hash in snapshot)
                {
                    if (!snapshot.Contains(hash ^ 1))
                    {
                        lock (failures)
                        {
                            failures.Add($"saw {hash} without {hash ^ 1}");
                        }

                        return;
                    }
                }

                if (set.Count % 2 != 0)
                {
                    lock (failures)
                    {
                        failures.Add($"odd count {set.Count}");
                    }

                    return;
                }
            }
        })).ToArray();

        ulong id = 0;
        for (ulong k = 0; k < 20_000; k++)
        {
            ulong pair = k % 50 * 2;
            Assert.Equal(KvApplyResult.Applied, set.Apply(k % 3 == 2 ? Removed(++id, pair, pair + 1) : Stored(++id, null, pair, pair + 1)));
        }

        await done.CancelAsync();
        await Task.WhenAll(readers);

        Assert.Empty(failures);
        Assert.Equal(20_000UL, set.LastEventId);
    }

    private static void AssertSameState(KvCachedSet expected, KvCachedSet actual)
    {
        Assert.Equal(expected.LastEventId, actual.LastEventId);
        Assert.Equal(Sorted(expected.BlockHashes), Sorted(actual.BlockHashes));
        foreach (ulong hash in expected.BlockHashes)
        {
            expected.TryGetParent(hash, out ulong? parent);
            expected.TryGetTokensHash(hash, out ulong tokens);
            Assert.True(actual.TryGetParent(hash, out ulong? actualParent));
            Assert.True(actual.TryGetTokensHash(hash, out ulong actualTokens));
            Assert.Equal(parent, actualParent);
            Assert.Equal(tokens, actualTokens);
        }
    }

    /// <summary>
    /// A block pool in miniature: caches the full blocks of random token sequences (sharing prefixes),
    /// evicts random blocks and sometimes everything, logging each change; it keeps its own record of
    /// what it holds, independent of <see cref="KvCachedSet"/>, and answers dumps from a mirror fed by
    /// its log.
    /// </summary>
    private sealed class FakeProducer
    {
        private const int BlockSize = 4;
        private readonly Random _random;
        private readonly Dictionary<ulong, (ulong? Parent, ulong Local)> _held = [];
        private readonly List<int[]> _prompts = [];
        private readonly KvCachedSet _mirror = new();

        public FakeProducer(long workerId, int logCapacity, Random random)
        {
            _random = random;
            Log = new KvEventLog(workerId, logCapacity);
            Log.Published += e => Assert.Equal(KvApplyResult.Applied, _mirror.Apply(e));
        }

        public KvEventLog Log { get; }

        public KvEventDump Dump() => _mirror.ToDump(Log.WorkerId);

        public void Step()
        {
            int roll = _random.Next(100);
            if (roll < 55)
            {
                Store();
            }
            else if (roll < 98)
            {
                Evict();
            }
            else
            {
                _held.Clear();
                Log.Append(KvClearedData.Instance);
            }
        }

        public void AssertConsumerMatches(KvCachedSet consumer)
        {
            Assert.Equal(Log.LastEventId, consumer.LastEventId);
            Assert.Equal(Sorted(_held.Keys), Sorted(consumer.BlockHashes));
            foreach ((ulong hash, (ulong? parent, ulong local)) in _held)
            {
                Assert.True(consumer.TryGetParent(hash, out ulong? consumerParent));
                Assert.True(consumer.TryGetTokensHash(hash, out ulong consumerLocal));
                Assert.Equal(parent, consumerParent);
                Assert.Equal(local, consumerLocal);
            }
        }

        private void Store()
        {
            // Half the prompts extend an earlier one, so prefixes are shared and chains branch.
            int[] prompt = _prompts.Count > 0 && _random.Next(2) == 0
                ? [.. _prompts[_random.Next(_prompts.Count)].Take(_random.Next(1, 4) * BlockSize), .. Tokens()]
                : Tokens();
            _prompts.Add(prompt);

            var blocks = new List<KvStoredBlock>();
            ulong? parent = null;
            ulong? firstParent = null;
            for (int start = 0; start + BlockSize <= prompt.Length; start += BlockSize)
            {
                ulong hash = BlockHasher.NextSequenceHash(parent, prompt.AsSpan(start, BlockSize), out ulong local);
                if (_held.ContainsKey(hash))
                {
                    if (blocks.Count > 0)
                    {
                        Flush(firstParent, blocks);
                    }
                }
                else
                {
                    if (blocks.Count == 0)
                    {
                        firstParent = parent;
                    }

                    _held[hash] = (parent, local);
                    blocks.Add(new KvStoredBlock(hash, local));
                }

                parent = hash;
            }

            if (blocks.Count > 0)
            {
                Flush(firstParent, blocks);
            }
        }

        private void Flush(ulong? parent, List<KvStoredBlock> blocks)
        {
            Log.Append(new KvStoredData(parent, blocks.ToArray()));
            blocks.Clear();
        }

        private void Evict()
        {
            if (_held.Count == 0)
            {
                return;
            }

            ulong[] victims = _held.Keys.OrderBy(_ => _random.Next()).Take(_random.Next(1, 4)).ToArray();
            foreach (ulong victim in victims)
            {
                _held.Remove(victim);
            }

            Log.Append(new KvRemovedData(victims));
        }

        private int[] Tokens() =>
            Enumerable.Range(0, _random.Next(0, 6 * BlockSize)).Select(_ => _random.Next(0, 50)).ToArray();
    }
}

using Dynamo.Llm.Kv;
using Dynamo.Llm.Routing;

namespace Dynamo.Tests.Llm.Routing;

public sealed class KvIndexTests
{
    /// <summary>A random prefix tree of block hashes: node i's path is the chain of hashes from the root to it.</summary>
    private sealed class HashTree
    {
        private readonly int[] _parent;
        private readonly ulong[] _hash;

        public HashTree(Random random, int nodes)
        {
            _parent = new int[nodes];
            _hash = new ulong[nodes];
            for (int i = 0; i < nodes; i++)
            {
                // Mostly deep chains with some branching, as shared system prompts and conversations give.
                _parent[i] = i == 0 || random.Next(8) == 0 ? -1 : random.Next(8) < 6 ? i - 1 : random.Next(i);
                _hash[i] = (ulong)random.NextInt64() ^ ((ulong)i << 48);
            }
        }

        public int Count => _hash.Length;

        public ulong[] Path(int node)
        {
            var path = new List<ulong>();
            for (int n = node; n >= 0; n = _parent[n])
            {
                path.Add(_hash[n]);
            }

            path.Reverse();
            return [.. path];
        }
    }

    private static int BruteForce(HashSet<ulong> held, ReadOnlySpan<ulong> hashes)
    {
        int n = 0;
        while (n < hashes.Length && held.Contains(hashes[n]))
        {
            n++;
        }

        return n;
    }

    private static KvStoredData Chain(ulong[] path, int start, int length) =>
        new(start == 0 ? null : path[start - 1], [.. path.Skip(start).Take(length).Select(h => new KvStoredBlock(h, h >> 3))]);

    private static KvEventData RandomData(Random random, HashTree tree, HashSet<ulong> held)
    {
        int kind = random.Next(20);
        if (kind == 0)
        {
            return KvClearedData.Instance;
        }

        if (kind < 7 && held.Count > 0)
        {
            ulong[] all = [.. held];
            var removed = new List<ulong>();
            int count = random.Next(1, 6);
            for (int i = 0; i < count; i++)
            {
                removed.Add(random.Next(5) == 0 ? (ulong)random.NextInt64() : all[random.Next(all.Length)]);
            }

            return new KvRemovedData(removed);
        }

        ulong[] path = tree.Path(random.Next(tree.Count));
        int start = random.Next(path.Length);
        return Chain(path, start, random.Next(1, path.Length - start + 1));
    }

    private static void Reference(HashSet<ulong> held, KvEventData data)
    {
        switch (data)
        {
            case KvStoredData s:
                held.UnionWith(s.Blocks.Select(b => b.BlockHash));
                break;
            case KvRemovedData r:
                held.ExceptWith(r.BlockHashes);
                break;
            default:
                held.Clear();
                break;
        }
    }

    private static void AssertMatchesEqualBruteForce(KvIndex index, Dictionary<long, HashSet<ulong>> reference, HashTree tree, Random random, OverlapScores scores, int queries)
    {
        for (int q = 0; q < queries; q++)
        {
            ulong[] query = tree.Path(random.Next(tree.Count));
            if (random.Next(4) == 0)
            {
                query[random.Next(query.Length)] = (ulong)random.NextInt64();
            }

            index.FindMatches(query, scores);
            foreach ((long worker, HashSet<ulong> held) in reference)
            {
                Assert.Equal(BruteForce(held, query), scores.Get(worker));
            }

            Assert.Equal(scores.Count, reference.Count(r => BruteForce(r.Value, query) > 0));
        }
    }

    // 200 workers: slots from 64 on live in the table's spill bitmaps, matched word by word.
    [Theory]
    [InlineData(16, 60, 400)]
    [InlineData(200, 6, 4000)]
    public void FindMatches_RandomEventsFromManyWorkers_EqualsBruteForce(int maxWorkers, int seeds, int steps)
    {
        var scores = new OverlapScores();
        for (int seed = 0; seed < seeds; seed++)
        {
            var random = new Random(seed);
            var tree = new HashTree(random, 150);
            var index = new KvIndex();
            var reference = new Dictionary<long, HashSet<ulong>>();
            var nextId = new Dictionary<long, ulong>();
            int workers = maxWorkers <= 16 ? random.Next(1, maxWorkers + 1) : maxWorkers;
            for (int step = 0; step < steps; step++)
            {
                long worker = 100 + random.Next(workers);
                HashSet<ulong> held = reference.TryGetValue(worker, out HashSet<ulong>? h) ? h : reference[worker] = [];
                ulong id = nextId[worker] = nextId.GetValueOrDefault(worker) + 1;
                KvEventData data = RandomData(random, tree, held);
                Assert.Equal(KvApplyResult.Applied, index.Apply(new KvEvent(worker, id, data)));
                Reference(held, data);
                if (step % 40 == 0)
                {
                    AssertMatchesEqualBruteForce(index, reference, tree, random, scores, 20);
                }
            }

            AssertMatchesEqualBruteForce(index, reference, tree, random, scores, 100);
            Assert.Equal(reference.Values.SelectMany(s => s).Distinct().Count(), index.BlockCount);
            foreach ((long worker, HashSet<ulong> held) in reference)
            {
                Assert.Equal(held.Count, index.BlockCountOf(worker));
            }
        }
    }

    [Theory]
    [InlineData(6, 30, 600)]
    [InlineData(130, 4, 6000)]
    public void RemoveWorker_RandomState_PurgesItAndKeepsOthers(int workers, int seeds, int steps)
    {
        var scores = new OverlapScores();
        for (int seed = 0; seed < seeds; seed++)
        {
            var random = new Random(1000 + seed);
            var tree = new HashTree(random, 100);
            var index = new KvIndex();
            var reference = new Dictionary<long, HashSet<ulong>>();
            var nextId = new Dictionary<long, ulong>();
            for (int step = 0; step < steps; step++)
            {
                long worker = random.Next(workers);
                if (random.Next(50) == 0)
                {
                    Assert.Equal(reference.ContainsKey(worker), index.RemoveWorker(worker));
                    reference.Remove(worker);
                    nextId.Remove(worker);
                    continue;
                }

                HashSet<ulong> held = reference.TryGetValue(worker, out HashSet<ulong>? h) ? h : reference[worker] = [];
                ulong id = nextId[worker] = nextId.GetValueOrDefault(worker) + 1;
                KvEventData data = RandomData(random, tree, held);
                index.Apply(new KvEvent(worker, id, data));
                Reference(held, data);
            }

            long gone = reference.Keys.First();
            index.RemoveWorker(gone);
            reference.Remove(gone);
            Assert.DoesNotContain(gone, index.Workers);
            Assert.Equal(0, index.BlockCountOf(gone));
            AssertMatchesEqualBruteForce(index, reference, tree, random, scores, 100);
            Assert.Equal(reference.Values.SelectMany(s => s).Distinct().Count(), index.BlockCount);
        }
    }

    [Fact]
    public void LoadDump_LossyDelayedStreams_RebuildsExactlyTheProducersSet()
    {
        var scores = new OverlapScores();
        for (int seed = 0; seed < 40; seed++)
        {
            var random = new Random(2000 + seed);
            var tree = new HashTree(random, 120);
            var index = new KvIndex(resyncBufferCapacity: 64);
            int workers = random.Next(1, 6);
            var producers = Enumerable.Range(0, workers).Select(_ => new KvCachedSet()).ToArray();
            var delayed = new List<KvEvent>();
            for (int step = 0; step < 500; step++)
            {
                int w = random.Next(workers);
                KvCachedSet producer = producers[w];
                var e = new KvEvent(w, producer.LastEventId + 1, RandomData(random, tree, [.. producer.BlockHashes]));
                Assert.Equal(KvApplyResult.Applied, producer.Apply(e));
                int fate = random.Next(20);
                if (fate == 0)
                {
                    continue; // lost
                }

                if (fate == 1)
                {
                    delayed.Add(e);
                }
                else
                {
                    index.Apply(e);
                }

                if (delayed.Count > 0 && random.Next(5) == 0)
                {
                    int i = random.Next(delayed.Count);
                    index.Apply(delayed[i]);
                    delayed.RemoveAt(i);
                }

                // The router answers a gap some time later with a dump of the producer's state then.
                if (random.Next(10) == 0)
                {
                    foreach (RoutingTarget needing in index.WorkersNeedingResync)
                    {
                        index.LoadDump(needing, producers[needing.WorkerId].ToDump(needing.WorkerId));
                    }
                }
            }

            foreach (KvEvent e in delayed)
            {
                index.Apply(e);
            }

            foreach (RoutingTarget needing in index.WorkersNeedingResync)
            {
                index.LoadDump(needing, producers[needing.WorkerId].ToDump(needing.WorkerId));
            }

            // A worker whose last events were lost has no gap yet: the next event would show it.
            for (int w = 0; w < workers; w++)
            {
                if (index.LastEventId(w) != producers[w].LastEventId)
                {
                    index.RequestResync(w);
                    index.LoadDump(w, producers[w].ToDump(w));
                }
            }

            Assert.Empty(index.WorkersNeedingResync);
            var reference = Enumerable.Range(0, workers).ToDictionary(w => (long)w, w => producers[w].BlockHashes.ToHashSet());
            AssertMatchesEqualBruteForce(index, reference, tree, random, scores, 100);
            for (int w = 0; w < workers; w++)
            {
                Assert.Equal(producers[w].Count, index.BlockCountOf(w));
            }
        }
    }

    [Fact]
    public void Apply_GapThenDump_BufferedEventsReplayedAfterIt()
    {
        var index = new KvIndex();
        var a = new KvStoredData(null, [new KvStoredBlock(1, 1)]);
        var b = new KvStoredData(1, [new KvStoredBlock(2, 2)]);
        var c = new KvStoredData(2, [new KvStoredBlock(3, 3)]);
        Assert.Equal(KvApplyResult.Applied, index.Apply(new KvEvent(7, 1, a)));
        Assert.Equal(KvApplyResult.Gap, index.Apply(new KvEvent(7, 3, b)));
        Assert.Equal([7L], index.WorkersNeedingResync);
        Assert.Equal(KvApplyResult.Gap, index.Apply(new KvEvent(7, 4, c)));
        Assert.Equal(KvApplyResult.Stale, index.Apply(new KvEvent(7, 1, a)));
        Assert.Equal(1, index.FindMatches([1UL, 2, 3]).Get(7));

        index.LoadDump(7, new KvEventDump(7, 3, [new KvStoredData(null, [new KvStoredBlock(1, 1), new KvStoredBlock(2, 2)])]));

        Assert.Empty(index.WorkersNeedingResync);
        Assert.Equal(4UL, index.LastEventId(7));
        Assert.Equal(3, index.FindMatches([1UL, 2, 3]).Get(7));
    }

    [Fact]
    public void FindMatches_StopsAtFirstMissPerWorker()
    {
        var index = new KvIndex();
        index.Apply(new KvEvent(1, 1, new KvStoredData(null, [new(10, 0), new(11, 0), new(12, 0)])));
        index.Apply(new KvEvent(2, 1, new KvStoredData(null, [new(10, 0)])));
        index.Apply(new KvEvent(2, 2, new KvStoredData(11, [new(12, 0)])));
        index.Apply(new KvEvent(3, 1, new KvStoredData(10, [new(11, 0), new(12, 0)])));

        OverlapScores scores = index.FindMatches([10UL, 11, 12, 13]);

        Assert.Equal(3, scores.Get(1));
        Assert.Equal(1, scores.Get(2));
        Assert.Equal(0, scores.Get(3));
        Assert.Equal(2, scores.Count);
    }

    // Past block 63 the index walks only the tracked blocks and binary-searches each worker's end between two of them: exact
    // for caches that are prefix-closed, as LRU eviction keeps them (the tail of a prefix goes first).
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void FindMatches_LongPrefixClosedCaches_EqualsBruteForce(int seed)
    {
        var random = new Random(seed);
        ulong[] trunk = [.. Enumerable.Range(0, 5000).Select(_ => (ulong)random.NextInt64())];
        ulong[][] branches = [.. Enumerable.Range(0, 6).Select(_ =>
        {
            int at = random.Next(trunk.Length);
            return trunk.Take(at).Concat(Enumerable.Range(0, random.Next(1, 3000)).Select(_ => (ulong)random.NextInt64())).ToArray();
        }), trunk];
        var index = new KvIndex();
        var reference = new Dictionary<long, HashSet<ulong>>();
        for (long w = 0; w < 100; w++)
        {
            // Each worker caches a prefix of one or two branches, then loses a tail of one to eviction.
            var held = reference[w] = [];
            ulong id = 0;
            for (int k = 0, n = 1 + random.Next(2); k < n; k++)
            {
                ulong[] branch = branches[random.Next(branches.Length)];
                int length = random.Next(1, branch.Length + 1);
                index.Apply(new KvEvent(w, ++id, Chain(branch, 0, length)));
                held.UnionWith(branch.Take(length));
            }

            ulong[] evicted = branches[random.Next(branches.Length)];
            int keep = random.Next(evicted.Length);
            ulong[] tail = [.. evicted.Skip(keep).Where(h => held.Contains(h) && !branches.Any(b => b != evicted && IsHeldPrefixOf(b, h, held)))];
            index.Apply(new KvEvent(w, ++id, new KvRemovedData(tail)));
            held.ExceptWith(tail);
        }

        var scores = new OverlapScores();
        for (int q = 0; q < 200; q++)
        {
            ulong[] branch = branches[random.Next(branches.Length)];
            ulong[] query = [.. branch.Take(random.Next(1, branch.Length + 1))];
            index.FindMatches(query, scores);
            foreach ((long worker, HashSet<ulong> held) in reference)
            {
                Assert.Equal(BruteForce(held, query), scores.Get(worker));
            }
        }
    }

    // Whether h lies on branch b before a block of b the worker still holds (evicting it would leave a hole in b).
    private static bool IsHeldPrefixOf(ulong[] b, ulong h, HashSet<ulong> held)
    {
        int at = Array.IndexOf(b, h);
        return at >= 0 && at + 1 < b.Length && held.Contains(b[at + 1]);
    }

    [Fact]
    public void FindMatches_HoleInALongPrefix_FoundAtATrackedBlockUnseenBetween()
    {
        var random = new Random(7);
        ulong[] path = [.. Enumerable.Range(0, 3000).Select(_ => (ulong)random.NextInt64())];
        var index = new KvIndex();
        index.Apply(new KvEvent(1, 1, Chain(path, 0, path.Length)));
        index.Apply(new KvEvent(2, 1, Chain(path, 0, path.Length)));
        index.Apply(new KvEvent(1, 2, new KvRemovedData([path[1983]]))); // a tracked block (1,023 + 15 x 64)
        index.Apply(new KvEvent(2, 2, new KvRemovedData([path[2000]]))); // between tracked blocks 1,983 and 2,047
        index.Apply(new KvEvent(3, 1, Chain(path, 0, 40)));
        index.Apply(new KvEvent(3, 2, Chain(path, 41, 100))); // a hole at 40, where every block is tracked

        OverlapScores scores = index.FindMatches(path);

        Assert.Equal(1983, scores.Get(1));
        Assert.Equal(3000, scores.Get(2)); // LRU eviction never leaves such a hole; lost events can (the accuracy check resyncs)
        Assert.Equal(40, scores.Get(3));
    }

    [Fact]
    public void FindMatches_ReusedScores_AllocatesNothing()
    {
        var random = new Random(5);
        var index = new KvIndex();
        ulong[] path = [.. Enumerable.Range(0, 64).Select(_ => (ulong)random.NextInt64())];
        for (int w = 0; w < 64; w++)
        {
            index.Apply(new KvEvent(w, 1, Chain(path, 0, 1 + random.Next(64))));
        }

        var scores = new OverlapScores();
        index.FindMatches(path, scores);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            index.FindMatches(path, scores);
        }

        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
        Assert.Equal(64, scores.Count);
    }
}

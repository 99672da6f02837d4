using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Llm.Kv;

public class KvBlockPoolTests
{
    private static (ulong[] Seq, ulong[] Local) Hashes(int[] tokens, int blockSize)
    {
        int n = tokens.Length / blockSize;
        var seq = new ulong[n];
        var local = new ulong[n];
        BlockHasher.SequenceHashes(tokens, blockSize, seq, local);
        return (seq, local);
    }

    [Fact]
    public void TryAllocate_MoreThanFree_ChangesNothing()
    {
        var pool = new KvBlockPool(4, 2);
        var table = new BlockTable();
        Assert.True(pool.TryAllocate(3, table));
        Assert.False(pool.TryAllocate(2, table));
        Assert.Equal(3, table.Count);
        Assert.Equal(1, pool.FreeCount);
        pool.CheckInvariants();
    }

    [Fact]
    public void Commit_ThenRelease_BlocksStayCachedAndAreFoundAgain()
    {
        var log = new KvEventLog(1);
        var pool = new KvBlockPool(8, 4, log);
        int[] tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        (ulong[] seq, ulong[] local) = Hashes(tokens, 4);
        var a = new BlockTable();
        Assert.True(pool.TryReserve(a, tokens.Length));
        pool.Commit(a, seq, local, 0, 2);
        pool.Release(a);
        Assert.Equal(0, pool.UsedCount);
        Assert.Equal(2, pool.CachedCount);
        Assert.Equal(2, pool.CachedPrefixBlocks(seq));

        var b = new BlockTable();
        pool.AcquireCached(seq, b);
        Assert.Equal(2, pool.UsedCount);
        var stored = Assert.IsType<KvStoredData>(Assert.Single(log.TryGetSince(0, out var events) ? events : []).Data);
        Assert.Null(stored.ParentHash);
        Assert.Equal([new KvStoredBlock(seq[0], local[0]), new KvStoredBlock(seq[1], local[1])], stored.Blocks);
        pool.CheckInvariants();
    }

    [Fact]
    public void TryAllocate_WhenOnlyCachedBlocksAreFree_EvictsLeastRecentlyUsedAndPublishesRemoved()
    {
        var log = new KvEventLog(1);
        var pool = new KvBlockPool(4, 2, log);
        int[] first = [1, 2, 3, 4], second = [9, 9, 8, 8];
        (ulong[] s1, ulong[] l1) = Hashes(first, 2);
        (ulong[] s2, ulong[] l2) = Hashes(second, 2);
        var t = new BlockTable();
        pool.TryAllocate(2, t);
        pool.Commit(t, s1, l1, 0, 2);
        pool.Release(t);
        pool.TryAllocate(2, t);
        pool.Commit(t, s2, l2, 0, 2);
        pool.Release(t);

        // first was released earlier, and a sequence releases its tail first: first's tail goes first.
        Assert.True(pool.TryAllocate(1, t));
        Assert.False(pool.IsCached(s1[1]));
        Assert.True(pool.IsCached(s1[0]));
        Assert.True(pool.IsCached(s2[0]) && pool.IsCached(s2[1]));
        Assert.True(log.TryGetSince(2, out var events));
        Assert.Equal([s1[1]], Assert.IsType<KvRemovedData>(Assert.Single(events).Data).BlockHashes);
        pool.CheckInvariants();
    }

    [Fact]
    public void Commit_SameContentInTwoSequences_FirstWinsAndSecondStaysUncached()
    {
        var log = new KvEventLog(1);
        var pool = new KvBlockPool(8, 2, log);
        int[] tokens = [5, 6, 7, 8];
        (ulong[] s, ulong[] l) = Hashes(tokens, 2);
        var a = new BlockTable();
        var b = new BlockTable();
        pool.TryAllocate(2, a);
        pool.TryAllocate(2, b);
        pool.Commit(a, s, l, 0, 2);
        pool.Commit(b, s, l, 0, 2);
        Assert.Equal(2, pool.CachedCount);
        Assert.Equal(1UL, log.LastEventId);
        pool.Release(b);
        pool.Release(a);
        pool.CheckInvariants();
        Assert.Equal(2, pool.CachedCount);
    }

    [Fact]
    public void Dump_AfterMixedChanges_EqualsReplayedEvents()
    {
        var log = new KvEventLog(3);
        var pool = new KvBlockPool(6, 2, log);
        var replay = new KvCachedSet();
        log.Published += e => Assert.Equal(KvApplyResult.Applied, replay.Apply(e));
        var t = new BlockTable();
        for (int round = 0; round < 5; round++)
        {
            int[] tokens = [round, round + 1, round + 2, round + 3, 7, 7];
            (ulong[] s, ulong[] l) = Hashes(tokens, 2);
            Assert.True(pool.TryAllocate(3, t));
            pool.Commit(t, s, l, 0, 3);
            pool.Release(t);
        }

        Assert.Equal(pool.CachedHashes.ToHashSet(), replay.BlockHashes.ToHashSet());
        var fromDump = new KvCachedSet();
        fromDump.Load(pool.Dump(3));
        Assert.Equal(pool.CachedHashes.ToHashSet(), fromDump.BlockHashes.ToHashSet());
        Assert.Equal(log.LastEventId, fromDump.LastEventId);

        pool.ClearCache();
        Assert.Empty(pool.CachedHashes);
        Assert.Empty(replay.BlockHashes);
        pool.CheckInvariants();
    }

    [Fact]
    public void Release_AllBlocks_ReturnsThemToTheFreeList()
    {
        var pool = new KvBlockPool(2, 2);
        var t = new BlockTable();
        pool.TryAllocate(1, t);
        int id = t[0];
        pool.Release(t);
        var again = new BlockTable();
        pool.TryAllocate(2, again);
        pool.Release(again);
        Assert.Equal(0, pool.ReferenceCount(id));
        pool.CheckInvariants();
    }

    [Fact]
    public void PrefixCachingOff_NothingIsCached()
    {
        var log = new KvEventLog(1);
        var pool = new KvBlockPool(4, 2, log, prefixCaching: false);
        (ulong[] s, ulong[] l) = Hashes([1, 2, 3, 4], 2);
        var t = new BlockTable();
        pool.TryAllocate(2, t);
        pool.Commit(t, s, l, 0, 2);
        Assert.Equal(0, pool.CachedCount);
        Assert.Equal(0, pool.CachedPrefixBlocks(s));
        Assert.Equal(0UL, log.LastEventId);
    }
}

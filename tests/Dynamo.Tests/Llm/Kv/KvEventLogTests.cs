using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Llm.Kv;

public sealed class KvEventLogTests
{
    private static KvRemovedData Removed(ulong hash) => new([hash]);

    private static ulong[] Ids(IReadOnlyList<KvEvent> events) => events.Select(e => e.EventId).ToArray();

    private static ulong[] Range(ulong first, ulong last) =>
        first > last ? [] : Enumerable.Range(0, (int)(last - first + 1)).Select(i => first + (ulong)i).ToArray();

    [Fact]
    public void LastEventId_NewLog_Zero()
    {
        var log = new KvEventLog(4);

        Assert.Equal(0UL, log.LastEventId);
        Assert.Equal(4L, log.WorkerId);
        Assert.Equal(1024, log.Capacity);
        Assert.True(log.TryGetSince(0, out IReadOnlyList<KvEvent> events));
        Assert.Empty(events);
    }

    [Fact]
    public void Append_ThreeEvents_IdsOneTwoThreeWithWorkerIdAndData()
    {
        var log = new KvEventLog(9);

        KvEvent first = log.Append(Removed(10))!;
        KvEvent second = log.Append(KvClearedData.Instance)!;
        KvEvent third = log.Append(Removed(30))!;

        Assert.Equal(new KvEvent(9, 1, Removed(10)), first);
        Assert.Equal(new KvEvent(9, 2, KvClearedData.Instance), second);
        Assert.Equal(new KvEvent(9, 3, Removed(30)), third);
        Assert.Equal(3UL, log.LastEventId);
    }

    [Fact]
    public void Append_Subscriber_PublishedOnceEachAfterStoring()
    {
        var log = new KvEventLog(1);
        var seen = new List<(KvEvent Event, ulong LastId, int Retrievable)>();
        log.Published += e =>
        {
            log.TryGetSince(e.EventId - 1, out IReadOnlyList<KvEvent> retrievable);
            seen.Add((e, log.LastEventId, retrievable.Count));
        };

        KvEvent a = log.Append(Removed(1))!;
        KvEvent b = log.Append(Removed(2))!;

        Assert.Equal([(a, 1UL, 1), (b, 2UL, 1)], seen);
    }

    [Fact]
    public void Append_NullData_Throws()
    {
        var log = new KvEventLog(1);

        Assert.Throws<ArgumentNullException>(() => log.Append(null!));
        Assert.Equal(0UL, log.LastEventId);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public void Ctor_CapacityBelowOne_Throws(int capacity)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvEventLog(1, capacity));
    }

    [Fact]
    public void TryGetSince_AtOrPastLast_TrueAndEmpty()
    {
        var log = new KvEventLog(1);
        log.Append(Removed(1));
        log.Append(Removed(2));

        Assert.True(log.TryGetSince(2, out IReadOnlyList<KvEvent> atLast));
        Assert.True(log.TryGetSince(100, out IReadOnlyList<KvEvent> pastLast));
        Assert.Empty(atLast);
        Assert.Empty(pastLast);
    }

    [Fact]
    public void TryGetSince_Middle_LaterEventsInOrder()
    {
        var log = new KvEventLog(1);
        for (ulong i = 1; i <= 5; i++)
        {
            log.Append(Removed(i * 10));
        }

        Assert.True(log.TryGetSince(2, out IReadOnlyList<KvEvent> events));

        Assert.Equal([3UL, 4UL, 5UL], Ids(events));
        Assert.Equal<KvEventData>([Removed(30), Removed(40), Removed(50)], events.Select(e => e.Data));
    }

    [Fact]
    public void TryGetSince_1025AppendsCapacity1024_Event1GoneLast1024Retrievable()
    {
        var log = new KvEventLog(1);
        for (ulong i = 1; i <= 1025; i++)
        {
            log.Append(Removed(i));
        }

        Assert.False(log.TryGetSince(0, out IReadOnlyList<KvEvent> none));
        Assert.Empty(none);
        Assert.True(log.TryGetSince(1, out IReadOnlyList<KvEvent> all));
        Assert.Equal(Range(2, 1025), Ids(all));
        Assert.Equal(Range(2, 1025), all.Select(e => ((KvRemovedData)e.Data).BlockHashes[0]).ToArray());
        Assert.True(log.TryGetSince(1000, out IReadOnlyList<KvEvent> tail));
        Assert.Equal(Range(1001, 1025), Ids(tail));
    }

    [Fact]
    public void TryGetSince_SmallRingAfterManyWraps_ExactlyTheRetainedRange()
    {
        var log = new KvEventLog(1, capacity: 5);
        for (ulong i = 1; i <= 23; i++)
        {
            log.Append(Removed(i));
        }

        for (ulong after = 0; after <= 23; after++)
        {
            bool ok = log.TryGetSince(after, out IReadOnlyList<KvEvent> events);

            Assert.Equal(after >= 18, ok);
            Assert.Equal(ok ? Range(after + 1, 23) : [], Ids(events));
            Assert.All(events, e => Assert.Equal(e.EventId, ((KvRemovedData)e.Data).BlockHashes[0]));
        }
    }

    [Fact]
    public async Task Append_ConcurrentWritersAndReaders_IdsContiguousOrderedAndPublishedInOrder()
    {
        const int Writers = 2;
        const int PerWriter = 5_000;
        var log = new KvEventLog(1, capacity: 64);
        var published = new List<ulong>();
        log.Published += e => published.Add(e.EventId);
        using var done = new CancellationTokenSource();
        var failures = new List<string>();

        Task[] readers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            ulong seen = 0;
            while (!done.IsCancellationRequested)
            {
                if (log.TryGetSince(seen, out IReadOnlyList<KvEvent> events))
                {
                    foreach (KvEvent e in events)
                    {
                        if (e.EventId != seen + 1)
                        {
                            lock (failures)
                            {
                                failures.Add($"reader expected {seen + 1}, got {e.EventId}");
                            }

                            return;
                        }

                        seen = e.EventId;
                    }
                }
                else
                {
                    // Fell behind the ring: resync as a consumer would, from the latest id.
                    seen = log.LastEventId;
                }
            }
        })).ToArray();

        Task[] writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            for (int i = 0; i < PerWriter; i++)
            {
                log.Append(Removed((ulong)w));
            }
        })).ToArray();

        await Task.WhenAll(writers);
        await done.CancelAsync();
        await Task.WhenAll(readers);

        Assert.Empty(failures);
        Assert.Equal((ulong)(Writers * PerWriter), log.LastEventId);
        Assert.Equal(Range(1, Writers * PerWriter), published);
        Assert.True(log.TryGetSince(log.LastEventId - 64, out IReadOnlyList<KvEvent> last));
        Assert.Equal(Range(log.LastEventId - 63, log.LastEventId), Ids(last));
    }
}

using Dynamo.Llm.Kv;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Tests.Llm.Scheduling;

public class SchedulerTests
{
    [Fact]
    public void Schedule_LongPrompt_PrefillsInChunksWithinTheBudgetAndSamplesOnlyAtTheEnd()
    {
        var pool = new KvBlockPool(16, 4);
        var scheduler = new Scheduler(new SchedulerOptions { MaxNumBatchedTokens = 16 }, pool);
        var s = new SequenceState("a", Enumerable.Range(0, 50).ToArray(), 64, 4);
        scheduler.Enqueue(s);
        var sizes = new List<(int Start, int Count, bool Samples)>();
        while (s.ComputedTokens < 50)
        {
            SchedulerStep step = scheduler.Schedule();
            ScheduledChunk c = Assert.Single(step.Chunks);
            sizes.Add((c.StartPos, c.TokenCount, c.SamplesToken));
            scheduler.Complete(step);
        }

        Assert.Equal([(0, 16, false), (16, 16, false), (32, 16, false), (48, 2, true)], sizes);
        Assert.Equal(13, s.Blocks.Count);
        Assert.Equal(12, pool.CachedCount);
    }

    [Fact]
    public void Schedule_MaxNumSeqs_LimitsTheRunningBatch()
    {
        var scheduler = new Scheduler(new SchedulerOptions { MaxNumSeqs = 2 }, new KvBlockPool(64, 4));
        for (int i = 0; i < 5; i++)
        {
            scheduler.Enqueue(new SequenceState($"r{i}", [i + 1, 2, 3], 64, 4));
        }

        SchedulerStep step = scheduler.Schedule();
        Assert.Equal(["r0", "r1"], step.Chunks.Select(c => c.Sequence.RequestId));
        Assert.Equal(2, scheduler.RunningCount);
        Assert.Equal(3, scheduler.WaitingCount);
    }

    [Fact]
    public void Schedule_SharedPrefix_SecondRequestSkipsTheCachedBlocks()
    {
        var pool = new KvBlockPool(64, 4);
        var scheduler = new Scheduler(SchedulerOptions.Default, pool);
        int[] prefix = Enumerable.Range(100, 12).ToArray();
        var a = new SequenceState("a", [.. prefix, 1, 2], 64, 4);
        scheduler.Enqueue(a);
        scheduler.Complete(scheduler.Schedule());
        scheduler.Finish(a);

        var b = new SequenceState("b", [.. prefix, 7], 64, 4);
        scheduler.Enqueue(b);
        SchedulerStep step = scheduler.Schedule();
        ScheduledChunk c = Assert.Single(step.Chunks);
        Assert.Equal(12, c.StartPos);
        Assert.Equal(1, c.TokenCount);
        Assert.Equal(12, b.CachedPromptTokens);
        Assert.Equal(12, scheduler.PrefixHitTokens);
        Assert.Equal(14 + 13, scheduler.PrefixQueryTokens);
    }

    [Fact]
    public void Schedule_WholePromptCached_StillRunsTheLastBlock()
    {
        var pool = new KvBlockPool(64, 4);
        var scheduler = new Scheduler(SchedulerOptions.Default, pool);
        int[] prompt = Enumerable.Range(1, 8).ToArray();
        var a = new SequenceState("a", prompt, 64, 4);
        scheduler.Enqueue(a);
        scheduler.Complete(scheduler.Schedule());
        scheduler.Finish(a);
        var b = new SequenceState("b", prompt, 64, 4);
        scheduler.Enqueue(b);
        ScheduledChunk c = Assert.Single(scheduler.Schedule().Chunks);
        Assert.Equal((4, 4, true), (c.StartPos, c.TokenCount, c.SamplesToken));
    }

    [Fact]
    public void Schedule_PoolExhausted_PreemptsTheLatestAdmittedAndRecomputesIt()
    {
        var pool = new KvBlockPool(4, 2);
        var scheduler = new Scheduler(SchedulerOptions.Default, pool);
        var a = new SequenceState("a", [1, 2, 3], 8, 8);
        var b = new SequenceState("b", [4, 5, 6], 8, 8);
        scheduler.Enqueue(a);
        scheduler.Enqueue(b);
        scheduler.Complete(scheduler.Schedule());
        a.AppendToken(9);
        b.AppendToken(9);
        SchedulerStep step = scheduler.Schedule();
        scheduler.Complete(step);
        Assert.Equal(0, step.Preempted);
        a.AppendToken(9);
        b.AppendToken(9);

        // Each now needs a third block; only a (admitted first) keeps running.
        step = scheduler.Schedule();
        Assert.Equal(1, step.Preempted);
        Assert.Equal("a", Assert.Single(step.Chunks).Sequence.RequestId);
        Assert.Equal(SequenceStatus.Waiting, b.Status);
        Assert.Equal(0, b.ComputedTokens);
        Assert.Equal(1, scheduler.Preemptions);
        scheduler.Complete(step);
        scheduler.Finish(a);
        step = scheduler.Schedule();
        ScheduledChunk c = Assert.Single(step.Chunks);
        Assert.Same(b, c.Sequence);
        Assert.True(c.SamplesToken);
        Assert.Equal(5, c.StartPos + c.TokenCount);
    }

    [Fact]
    public void Finish_WaitingOrRunning_ReleasesEverything()
    {
        var pool = new KvBlockPool(8, 2);
        var scheduler = new Scheduler(new SchedulerOptions { MaxNumSeqs = 1 }, pool);
        var a = new SequenceState("a", [1, 2, 3], 8, 8);
        var b = new SequenceState("b", [1, 2, 3], 8, 8);
        scheduler.Enqueue(a);
        scheduler.Enqueue(b);
        scheduler.Schedule();
        scheduler.Finish(b);
        scheduler.Finish(a);
        scheduler.Finish(a);
        Assert.False(scheduler.HasWork);
        Assert.Equal(0, pool.UsedCount);
        pool.CheckInvariants();
    }

    [Fact]
    public void TryReserveComputed_ThenEnqueueComputed_NeverScheduledBeforeAndSkipsTheComputedTokens()
    {
        var pool = new KvBlockPool(16, 4);
        var scheduler = new Scheduler(SchedulerOptions.Default, pool);
        var s = new SequenceState("a", [.. Enumerable.Range(1, 10)], 64, 4);
        Assert.True(scheduler.TryReserveComputed(s, 9));
        Assert.Equal(SequenceStatus.Reserved, s.Status);
        Assert.Equal(3, s.Blocks.Count);
        Assert.Equal(13, pool.FreeCount);
        Assert.Equal(1, scheduler.ReservedCount);
        Assert.Equal(0, scheduler.WaitingCount + scheduler.RunningCount);
        Assert.False(scheduler.HasWork);
        Assert.True(scheduler.Schedule().IsEmpty);
        Assert.Throws<InvalidOperationException>(() => scheduler.Enqueue(s));
        Assert.Throws<InvalidOperationException>(() => scheduler.TryReserveComputed(s, 9));

        scheduler.EnqueueComputed(s, 9);
        Assert.Equal(0, scheduler.ReservedCount);
        Assert.Equal(0, s.CachedPromptTokens);
        ScheduledChunk c = Assert.Single(scheduler.Schedule().Chunks);
        Assert.Equal((9, 1, true), (c.StartPos, c.TokenCount, c.SamplesToken));
        Assert.Throws<InvalidOperationException>(() => scheduler.EnqueueComputed(s, 9));
    }

    [Fact]
    public void ReleaseReservation_ThenEnqueue_PrefillsEveryToken()
    {
        var pool = new KvBlockPool(16, 4);
        var scheduler = new Scheduler(SchedulerOptions.Default, pool);
        var s = new SequenceState("a", [.. Enumerable.Range(1, 10)], 64, 4);
        Assert.True(scheduler.TryReserveComputed(s, 9));
        scheduler.ReleaseReservation(s);
        Assert.Equal(16, pool.FreeCount);
        Assert.Equal(0, scheduler.ReservedCount);
        Assert.Equal(SequenceStatus.Waiting, s.Status);
        Assert.Throws<InvalidOperationException>(() => scheduler.ReleaseReservation(s));
        scheduler.Enqueue(s);
        ScheduledChunk c = Assert.Single(scheduler.Schedule().Chunks);
        Assert.Equal((0, 10, true), (c.StartPos, c.TokenCount, c.SamplesToken));
    }

    [Fact]
    public void TryReserveComputed_TooFewFreeBlocksOrTokensOutOfRange_ReservesNothing()
    {
        var pool = new KvBlockPool(2, 4);
        var scheduler = new Scheduler(SchedulerOptions.Default, pool);
        var s = new SequenceState("a", [.. Enumerable.Range(1, 10)], 64, 4);
        Assert.False(scheduler.TryReserveComputed(s, 9));
        Assert.Throws<ArgumentOutOfRangeException>(() => scheduler.TryReserveComputed(s, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => scheduler.TryReserveComputed(s, 0));
        Assert.Equal(2, pool.FreeCount);
        Assert.Equal(0, s.Blocks.Count);
        Assert.Equal(SequenceStatus.Waiting, s.Status);
        Assert.Equal(0, scheduler.ReservedCount);
        scheduler.Enqueue(s);
        Assert.True(scheduler.HasWork);
    }

    [Fact]
    public void Finish_Reserved_ReleasesItsBlocks()
    {
        var pool = new KvBlockPool(8, 2);
        var scheduler = new Scheduler(SchedulerOptions.Default, pool);
        var s = new SequenceState("a", [1, 2, 3, 4, 5], 8, 8);
        Assert.True(scheduler.TryReserveComputed(s, 4));
        Assert.Equal(2, pool.UsedCount);
        scheduler.Finish(s);
        Assert.Equal(SequenceStatus.Finished, s.Status);
        Assert.Equal(0, scheduler.ReservedCount);
        Assert.Equal(0, pool.UsedCount);
        pool.CheckInvariants();
    }
}

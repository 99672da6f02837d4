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

    /// <summary>Runs a planned step: completes it, gives each sampling sequence a token, ends those at their max tokens.</summary>
    private static void Run(Scheduler scheduler, SchedulerStep step)
    {
        scheduler.Complete(step);
        foreach (ScheduledChunk c in step.Chunks.Where(c => c.SamplesToken).ToList())
        {
            c.Sequence.AppendToken(c.Sequence.Tokens.Count % 7);
            if (c.Sequence.OutputLength >= c.Sequence.MaxNewTokens)
            {
                scheduler.Finish(c.Sequence);
            }
        }
    }

    [Fact]
    public void Schedule_StepBudget_ArrivalsWhileDecoding_EachStepWithinBudgetAndPrefillAdvances()
    {
        var cost = new StepCost(2, 1, 1.5);
        var options = new SchedulerOptions { MaxNumSeqs = 128, MaxNumBatchedTokens = 512, MaxStepMs = 50, MinPrefillTokens = 16 };
        var scheduler = new Scheduler(options, new KvBlockPool(4096, 16), new StepCostModel(cost));
        var decoders = Enumerable.Range(0, 4).Select(i => new SequenceState($"d{i}", [.. Enumerable.Range(i, 20)], 4096, 1000)).ToList();
        decoders.ForEach(scheduler.Enqueue);
        while (decoders.Any(d => d.OutputLength == 0))
        {
            Run(scheduler, scheduler.Schedule());
        }

        // 40 prompts of 100 tokens arrive at once: today's scheduler would put 512 prompt tokens beside the 4 decodes.
        var arrivals = Enumerable.Range(0, 40).Select(i => new SequenceState($"a{i}", [.. Enumerable.Range(1000 * i, 100)], 4096, 60)).ToList();
        arrivals.ForEach(scheduler.Enqueue);
        int steps = 0, maxRunning = 0;
        while (arrivals.Any(a => a.Status != SequenceStatus.Finished))
        {
            Assert.True(steps++ < 1000, "the arrivals do not finish");
            var running = decoders.Concat(arrivals).Where(s => s.Status == SequenceStatus.Running).ToList();
            var decoding = running.Where(s => s.Tokens.Count - s.ComputedTokens == 1).ToList();
            SequenceState? prefilling = running.FirstOrDefault(s => s.Tokens.Count - s.ComputedTokens > 1);
            SchedulerStep step = scheduler.Schedule();

            Assert.True(cost.Predict(step.PrefillTokens, step.DecodeTokens) <= 50, $"step {steps}: {step.PrefillTokens} prefill tokens and {step.DecodeTokens} decodes");
            Assert.Equal(cost.Predict(step.PrefillTokens, step.DecodeTokens), step.PredictedMs, 9);
            Assert.All(decoding, d => Assert.Contains(step.Chunks, c => c.Sequence == d && c.TokenCount == 1));
            if (prefilling is not null)
            {
                // A running prompt gets at least the minimum chunk (or its rest) every step.
                Assert.True(step.PrefillTokens >= Math.Min(16, prefilling.Tokens.Count - prefilling.ComputedTokens), $"step {steps}: prefill stalled");
            }

            maxRunning = Math.Max(maxRunning, scheduler.RunningCount);
            Run(scheduler, step);
        }

        // Admission stops where the batch, all decoding, plus a 16-token chunk would pass 50 ms: 2 + 16 + 1.5 x 21 = 49.5
        // (above the floor of an efficient batch, 9 x 2 / 1.5 = 12).
        Assert.Equal(21, maxRunning);
        Assert.All(decoders, d => Assert.Equal(SequenceStatus.Running, d.Status));
    }

    [Fact]
    public void Schedule_StepBudget_NoDecodes_PrefillBoundedByTheTokenBudgetOnly_BesideADecodeCut()
    {
        var cost = new StepCost(2, 1, 1.5);
        var options = new SchedulerOptions { MaxNumBatchedTokens = 512, MaxStepMs = 50, MinPrefillTokens = 16 };
        var scheduler = new Scheduler(options, new KvBlockPool(1024, 16), new StepCostModel(cost));
        var first = new SequenceState("first", [.. Enumerable.Range(0, 300)], 4096, 10);
        scheduler.Enqueue(first);

        // Nothing decodes: the whole prompt in one step (302 ms predicted, over the 50 ms budget, which protects decodes).
        SchedulerStep step = scheduler.Schedule();
        Assert.Equal((300, 0), (step.PrefillTokens, step.DecodeTokens));
        Run(scheduler, step);

        // Now it decodes: a second prompt gets what fits beside that decode, 2 + 46 + 1.5 = 49.5 ms.
        var second = new SequenceState("second", [.. Enumerable.Range(1000, 300)], 4096, 10);
        scheduler.Enqueue(second);
        step = scheduler.Schedule();
        Assert.Equal((46, 1), (step.PrefillTokens, step.DecodeTokens));
        Assert.True(cost.Predict(step.PrefillTokens, step.DecodeTokens) <= 50);
    }

    [Fact]
    public void Schedule_StepBudget_DecodesAloneOverBudget_StillRunsThemAndTheMinimumChunkAndAdmitsNobody()
    {
        var options = new SchedulerOptions { MaxNumBatchedTokens = 512, MaxStepMs = 50, MinPrefillTokens = 16 };
        var cost = new StepCostModel(new StepCost(5, 0.2, 0.2));
        var scheduler = new Scheduler(options, new KvBlockPool(1024, 16), cost);
        var decoders = Enumerable.Range(0, 6).Select(i => new SequenceState($"d{i}", [i + 1, 2, 3], 4096, 100)).ToList();
        decoders.ForEach(scheduler.Enqueue);
        var prompt = new SequenceState("p", [.. Enumerable.Range(0, 1000)], 4096, 4);
        scheduler.Enqueue(prompt);
        Run(scheduler, scheduler.Schedule());
        Assert.Equal(SequenceStatus.Running, prompt.Status);
        var later = new SequenceState("later", [.. Enumerable.Range(5000, 100)], 4096, 4);
        scheduler.Enqueue(later);

        // The machine turns out slower: a decode costs 10 ms, so 6 decodes alone take 65 ms.
        var truth = new StepCost(5, 1, 10);
        var random = new Random(1);
        for (int i = 0; i < 300; i++)
        {
            (int p, int d) = (random.Next(0, 100), random.Next(0, 20));
            cost.Observe(p, d, truth.Predict(p, d));
        }

        for (int i = 0; i < 3; i++)
        {
            int before = prompt.ComputedTokens;
            SchedulerStep step = scheduler.Schedule();
            Assert.Equal((6, 16), (step.DecodeTokens, step.PrefillTokens));
            Assert.Equal(before, step.Chunks.Single(c => c.Sequence == prompt).StartPos);
            Assert.Equal(SequenceStatus.Waiting, later.Status);
            Run(scheduler, step);
        }
    }

    [Fact]
    public void Schedule_HeadCannotFitBehindImportedKv_ImportedSequencesRunFirstAndAllFinish()
    {
        // A pool of 16 blocks of 4 tokens. Three sequences reserve 4 blocks each for imported KV (12 held), then a new
        // prompt of 40 tokens (10 blocks) is queued first; the imports arrive and queue behind it. Nothing runs: in order,
        // the head waits for blocks only the imported sequences free, and they wait behind the head.
        var scheduler = new Scheduler(new SchedulerOptions { MaxNumBatchedTokens = 64 }, new KvBlockPool(16, 4));
        var imported = Enumerable.Range(0, 3).Select(i => new SequenceState($"i{i}", [.. Enumerable.Range(100 * i, 16)], 64, 2)).ToList();
        Assert.All(imported, s => Assert.True(scheduler.TryReserveComputed(s, 15)));
        var head = new SequenceState("head", [.. Enumerable.Range(1000, 40)], 64, 2);
        scheduler.Enqueue(head);
        imported.ForEach(s => scheduler.EnqueueComputed(s, 15));

        SchedulerStep first = scheduler.Schedule();
        Assert.False(first.IsEmpty);
        Assert.Equal("i0", first.Chunks[0].Sequence.RequestId);
        Assert.Equal((15, 1), (first.Chunks[0].StartPos, first.Chunks[0].TokenCount));

        int steps = 0;
        Run(scheduler, first);
        while (scheduler.HasWork)
        {
            Assert.True(steps++ < 100, "the sequences do not finish");
            Run(scheduler, scheduler.Schedule());
        }

        Assert.All(imported.Append(head), s => Assert.Equal(SequenceStatus.Finished, s.Status));
    }

    [Fact]
    public void Schedule_StepBudgetOff_SameStepsAsWithoutACostModel()
    {
        static List<string> Plan(SchedulerOptions options, StepCostModel? cost)
        {
            var scheduler = new Scheduler(options, new KvBlockPool(64, 4), cost);
            var random = new Random(5);
            var plan = new List<string>();
            for (int i = 0; i < 60; i++)
            {
                if (i % 3 == 0)
                {
                    scheduler.Enqueue(new SequenceState($"r{i}", [.. Enumerable.Range(0, random.Next(1, 40)).Select(_ => random.Next(9))], 256, random.Next(1, 20)));
                }

                if (!scheduler.HasWork)
                {
                    continue;
                }

                SchedulerStep step = scheduler.Schedule();
                plan.Add(string.Join(" ", step.Chunks.Select(c => $"{c.Sequence.RequestId}:{c.StartPos}+{c.TokenCount}")) + $" p{step.Preempted} {step.PredictedMs}");
                Run(scheduler, step);
            }

            return plan;
        }

        var options = new SchedulerOptions { MaxNumSeqs = 8, MaxNumBatchedTokens = 24 };
        var binding = new StepCostModel(new StepCost(5, 10, 10));
        Assert.Equal(Plan(options, null), Plan(options with { MaxStepMs = 0 }, binding));
        Assert.NotEqual(Plan(options, null), Plan(options with { MaxStepMs = 30 }, new StepCostModel(new StepCost(5, 10, 10))));
    }

    [Fact]
    public void Schedule_StepBudgetWithAColdModel_FirstStepFillsTheTokenBudget()
    {
        var scheduler = new Scheduler(new SchedulerOptions { MaxNumBatchedTokens = 64, MaxStepMs = 1 }, new KvBlockPool(64, 4));
        scheduler.Enqueue(new SequenceState("a", [.. Enumerable.Range(0, 100)], 256, 4));

        SchedulerStep step = scheduler.Schedule();

        Assert.Equal(64, step.PrefillTokens);
        Assert.Equal(0, step.PredictedMs);
    }
}

using Dynamo.Llm.Kv;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Tests.Llm.Scheduling;

/// <summary>
/// Random workloads against the scheduler and block pool with a simulated KV store: each computed position
/// writes a fingerprint of the token prefix it belongs to into its block slot, and every chunk first checks
/// that all earlier positions of its sequence read back the right fingerprints. So a block handed to two
/// sequences, a wrong prefix hit or an early reuse shows up as a wrong read.
/// </summary>
public class SchedulerPropertyTests
{
    public static TheoryData<int> Seeds => [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    [Theory]
    [MemberData(nameof(Seeds))]
    public void RandomWorkload_InvariantsHoldAndOutputsMatchRunningAlone(int seed)
    {
        var random = new Random(seed);
        int blockSize = random.Next(1, 6);
        int blocks = random.Next(12, 40);
        var options = new SchedulerOptions { MaxNumSeqs = random.Next(1, 9), MaxNumBatchedTokens = random.Next(4, 40) };
        int[][] prefixes = [.. Enumerable.Range(0, 3).Select(_ => Enumerable.Range(0, random.Next(0, 20)).Select(_ => random.Next(5)).ToArray())];
        var requests = new List<(int[] Prompt, int MaxNew, int CancelAfterStep)>();
        for (int i = 0; i < 30; i++)
        {
            int[] prefix = prefixes[random.Next(prefixes.Length)];
            int[] prompt = [.. prefix, .. Enumerable.Range(0, random.Next(1, 12)).Select(_ => random.Next(5))];
            requests.Add((prompt, random.Next(1, 12), random.Next(8) == 0 ? random.Next(1, 40) : -1));
        }

        int maxLength = blocks * blockSize;
        Dictionary<int, List<int>> together = Run(requests, blockSize, blocks, options, maxLength, cancel: true, out _);
        for (int i = 0; i < requests.Count; i++)
        {
            if (requests[i].CancelAfterStep >= 0)
            {
                continue;
            }

            Dictionary<int, List<int>> alone = Run([requests[i]], blockSize, blocks, options, maxLength, cancel: false, out _);
            Assert.Equal(alone[0], together[i]);
        }
    }

    /// <summary>
    /// The same with a step-time budget over a random cost the scheduler learns step by step: the budget cuts prefill
    /// and holds admissions back, and still no block is lost or shared wrongly, every request finishes and each one's
    /// tokens are those it gets alone without a budget.
    /// </summary>
    [Theory]
    [MemberData(nameof(Seeds))]
    public void RandomWorkload_StepBudget_InvariantsHoldAndOutputsMatchRunningAloneWithoutIt(int seed)
    {
        var random = new Random(seed);
        int blockSize = random.Next(1, 6);
        int blocks = random.Next(12, 40);
        var options = new SchedulerOptions { MaxNumSeqs = random.Next(1, 9), MaxNumBatchedTokens = random.Next(4, 40) };
        var truth = new StepCost(random.Next(1, 10), random.Next(1, 10) / 4.0, random.Next(1, 10) / 4.0);
        var budgeted = options with { MaxStepMs = random.Next(5, 40), MinPrefillTokens = random.Next(1, 8) };
        var requests = Enumerable.Range(0, 30).Select(_ => (Enumerable.Range(0, random.Next(1, 30)).Select(_ => random.Next(5)).ToArray(), random.Next(1, 12), -1)).ToList();

        int maxLength = blocks * blockSize;
        Dictionary<int, List<int>> together = Run(requests, blockSize, blocks, budgeted, maxLength, cancel: false, out _, truth);
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(Run([requests[i]], blockSize, blocks, options, maxLength, cancel: false, out _)[0], together[i]);
        }
    }

    [Fact]
    public void TinyPool_ManyRequests_PreemptsAndStillFinishesEverything()
    {
        var requests = Enumerable.Range(0, 20).Select(i => (Enumerable.Range(i, 10).ToArray(), 10, -1)).ToList();
        Dictionary<int, List<int>> outputs = Run(requests, 2, 16, new SchedulerOptions { MaxNumSeqs = 8, MaxNumBatchedTokens = 32 }, 32, cancel: false, out long preemptions);
        Assert.True(preemptions > 0, "a pool this small must preempt");
        Assert.All(outputs.Values, o => Assert.Equal(10, o.Count));
    }

    /// <summary>Next token: a deterministic function of the whole sequence (a stand-in for the model).</summary>
    private static int NextToken(IReadOnlyList<int> tokens)
    {
        ulong h = 1469598103934665603;
        foreach (int t in tokens)
        {
            h = (h ^ (uint)t) * 1099511628211;
        }

        return (int)(h % 7);
    }

    private static ulong Fingerprint(IReadOnlyList<int> tokens, int length)
    {
        ulong h = 14695981039346656037;
        for (int i = 0; i < length; i++)
        {
            h = (h ^ (uint)tokens[i]) * 1099511628211;
        }

        return h;
    }

    private static Dictionary<int, List<int>> Run(
        List<(int[] Prompt, int MaxNew, int CancelAfterStep)> requests, int blockSize, int blocks, SchedulerOptions options, int maxLength, bool cancel, out long preemptions, StepCost? truth = null)
    {
        var log = new KvEventLog(1, capacity: 100_000);
        var replay = new KvCachedSet();
        log.Published += e => Assert.Equal(KvApplyResult.Applied, replay.Apply(e));
        var pool = new KvBlockPool(blocks, blockSize, log);
        var scheduler = new Scheduler(options, pool);
        var kv = new ulong?[blocks * blockSize];
        var sequences = new List<SequenceState>();
        var outputs = new Dictionary<int, List<int>>();
        for (int i = 0; i < requests.Count; i++)
        {
            var s = new SequenceState($"r{i}", requests[i].Prompt, maxLength, requests[i].MaxNew) { Tag = i };
            sequences.Add(s);
            outputs[i] = [];
            scheduler.Enqueue(s);
        }

        int stepNumber = 0;
        while (scheduler.HasWork)
        {
            Assert.True(stepNumber++ < 10_000, "the workload does not finish");
            if (cancel)
            {
                foreach (SequenceState s in sequences.Where(s => s.Status != SequenceStatus.Finished && requests[(int)s.Tag!].CancelAfterStep == stepNumber))
                {
                    scheduler.Finish(s);
                }
            }

            SchedulerStep step = scheduler.Schedule();
            Assert.False(step.IsEmpty);
            Assert.True(step.TokenCount <= options.MaxNumBatchedTokens);
            Assert.True(scheduler.RunningCount <= options.MaxNumSeqs);
            CheckReferenceCounts(pool, sequences);
            foreach (ScheduledChunk c in step.Chunks)
            {
                SequenceState s = c.Sequence;
                for (int p = 0; p < c.StartPos; p++)
                {
                    Assert.Equal(Fingerprint(s.Tokens, p + 1), kv[Slot(s, p, blockSize)]);
                }

                for (int p = c.StartPos; p < c.StartPos + c.TokenCount; p++)
                {
                    int slot = Slot(s, p, blockSize);
                    int block = slot / blockSize;
                    Assert.True(pool.ReferenceCount(block) == 1 || kv[slot] == Fingerprint(s.Tokens, p + 1), $"write into shared block {block}");
                    kv[slot] = Fingerprint(s.Tokens, p + 1);
                }
            }

            scheduler.Complete(step);
            if (truth is { } cost)
            {
                scheduler.Cost.Observe(step.PrefillTokens, step.DecodeTokens, cost.Predict(step.PrefillTokens, step.DecodeTokens));
            }

            foreach (ScheduledChunk c in step.Chunks.Where(c => c.SamplesToken))
            {
                SequenceState s = c.Sequence;
                int token = NextToken(s.Tokens);
                s.AppendToken(token);
                outputs[(int)s.Tag!].Add(token);
                if (s.OutputLength >= s.MaxNewTokens || s.Tokens.Count >= s.MaxLength)
                {
                    scheduler.Finish(s);
                }
            }

            pool.CheckInvariants();
            Assert.Equal(pool.CachedHashes.ToHashSet(), replay.BlockHashes.ToHashSet());
        }

        Assert.Equal(0, pool.UsedCount);
        Assert.Equal(blocks, pool.FreeCount);
        var fromDump = new KvCachedSet();
        fromDump.Load(pool.Dump(1));
        Assert.Equal(pool.CachedHashes.ToHashSet(), fromDump.BlockHashes.ToHashSet());
        preemptions = scheduler.Preemptions;
        return outputs;
    }

    private static int Slot(SequenceState s, int position, int blockSize) => (s.Blocks[position / blockSize] * blockSize) + (position % blockSize);

    private static void CheckReferenceCounts(KvBlockPool pool, List<SequenceState> sequences)
    {
        var counts = new int[pool.BlockCount];
        foreach (SequenceState s in sequences.Where(s => s.Status == SequenceStatus.Running))
        {
            foreach (int b in s.Blocks.AsSpan())
            {
                counts[b]++;
            }
        }

        for (int b = 0; b < counts.Length; b++)
        {
            Assert.Equal(counts[b], pool.ReferenceCount(b));
        }
    }
}

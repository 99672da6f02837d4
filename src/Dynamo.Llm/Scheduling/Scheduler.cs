using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Scheduling;

/// <summary>
/// Continuous batching over a <see cref="KvBlockPool"/>, model-free (the engine and the mocker both run
/// it). Each <see cref="Schedule"/> plans one step within <see cref="SchedulerOptions.MaxNumBatchedTokens"/>:
/// first the running sequences in admission order (one decode token each, or the next chunk of a prompt
/// being prefilled), then waiting sequences first come first served while fewer than
/// <see cref="SchedulerOptions.MaxNumSeqs"/> run. A newly admitted sequence takes every cached block of its
/// prefix and skips their prefill. When a running sequence needs a block and none is free, the most
/// recently admitted sequence is preempted: its blocks are released (they stay cached, so it usually
/// finds most of them again) and it goes back to the front of the queue to be recomputed. A sequence whose
/// first tokens' KV comes from elsewhere holds blocks reserved for them outside the queue until it is written
/// (<see cref="TryReserveComputed"/>, <see cref="EnqueueComputed"/>). Not thread-safe: one engine thread owns it.
/// </summary>
public sealed class Scheduler
{
    private readonly SchedulerOptions _options;
    private readonly KvBlockPool _pool;
    private readonly List<SequenceState> _running = [];
    private readonly LinkedList<SequenceState> _waiting = new();
    private readonly SchedulerStep _step = new();
    private long _arrivals;

    /// <param name="options">Batch limits and the step-time budget.</param>
    /// <param name="pool">The KV blocks.</param>
    /// <param name="cost">What a step costs (the engine feeds it each step's time); null: a new, unseeded one.</param>
    public Scheduler(SchedulerOptions options, KvBlockPool pool, StepCostModel? cost = null)
    {
        _options = options.Validate();
        _pool = pool;
        Cost = cost ?? new StepCostModel();
    }

    /// <summary>The step cost the budget (<see cref="SchedulerOptions.MaxStepMs"/>) is checked against; the engine tells it what each step took.</summary>
    public StepCostModel Cost { get; }

    public SchedulerOptions Options => _options;

    public KvBlockPool Pool => _pool;

    public int RunningCount => _running.Count;

    public int WaitingCount => _waiting.Count;

    /// <summary>Sequences holding blocks reserved for keys and values the caller will write (<see cref="TryReserveComputed"/>); neither running nor waiting.</summary>
    public int ReservedCount { get; private set; }

    /// <summary>Whether a step has anything to run (reserved sequences do not count: they are never scheduled).</summary>
    public bool HasWork => _running.Count > 0 || _waiting.Count > 0;

    /// <summary>Preemptions so far.</summary>
    public long Preemptions { get; private set; }

    /// <summary>Tokens looked up in the prefix cache (a sequence's tokens, each time it is admitted).</summary>
    public long PrefixQueryTokens { get; private set; }

    /// <summary>Of <see cref="PrefixQueryTokens"/>, those found cached (their prefill skipped).</summary>
    public long PrefixHitTokens { get; private set; }

    /// <summary>Queues a new sequence at the back.</summary>
    public void Enqueue(SequenceState sequence)
    {
        if (sequence.Status != SequenceStatus.Waiting || sequence.Blocks.Count != 0)
        {
            throw new InvalidOperationException($"request {sequence.RequestId} was already scheduled");
        }

        sequence.Arrival = _arrivals++;
        _waiting.AddLast(sequence);
    }

    /// <summary>
    /// Reserves blocks for the first <paramref name="computedTokens"/> tokens of a new sequence, whose keys and
    /// values the caller writes into them (imported from another engine), and makes it
    /// <see cref="SequenceStatus.Reserved"/>: held aside, never scheduled, until <see cref="EnqueueComputed"/>
    /// (written) or <see cref="ReleaseReservation"/> (they will not come). False, with nothing reserved, when the
    /// pool has too few free blocks.
    /// </summary>
    public bool TryReserveComputed(SequenceState sequence, int computedTokens)
    {
        if (sequence.Status != SequenceStatus.Waiting || sequence.Blocks.Count != 0)
        {
            throw new InvalidOperationException($"request {sequence.RequestId} was already scheduled");
        }

        CheckComputed(sequence, computedTokens);
        if (!_pool.TryReserve(sequence.Blocks, computedTokens))
        {
            return false;
        }

        sequence.Status = SequenceStatus.Reserved;
        ReservedCount++;
        return true;
    }

    /// <summary>
    /// Queues a reserved sequence (<see cref="TryReserveComputed"/>) at the back, its first
    /// <paramref name="computedTokens"/> tokens written by the caller: their prefill is skipped, and its full
    /// blocks join the prefix cache after its first step.
    /// </summary>
    public void EnqueueComputed(SequenceState sequence, int computedTokens)
    {
        CheckReserved(sequence);
        CheckComputed(sequence, computedTokens);
        if (_pool.BlocksFor(computedTokens) > sequence.Blocks.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(computedTokens), $"{computedTokens} computed tokens of request {sequence.RequestId} need {_pool.BlocksFor(computedTokens)} blocks; {sequence.Blocks.Count} are reserved");
        }

        ReservedCount--;
        sequence.Status = SequenceStatus.Waiting;
        sequence.ComputedTokens = computedTokens;
        sequence.CachedPromptTokens = 0;
        sequence.Arrival = _arrivals++;
        _waiting.AddLast(sequence);
    }

    /// <summary>Gives back the blocks of a reserved sequence whose keys and values will not come: it is new again (<see cref="Enqueue"/> it to prefill here).</summary>
    public void ReleaseReservation(SequenceState sequence)
    {
        CheckReserved(sequence);
        ReservedCount--;
        _pool.Release(sequence.Blocks);
        sequence.Status = SequenceStatus.Waiting;
    }

    private static void CheckComputed(SequenceState sequence, int computedTokens)
    {
        if (computedTokens < 1 || computedTokens >= sequence.Tokens.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(computedTokens), $"{computedTokens} computed tokens of a sequence of {sequence.Tokens.Count} (at least its last token must be left to run)");
        }
    }

    private static void CheckReserved(SequenceState sequence)
    {
        if (sequence.Status != SequenceStatus.Reserved)
        {
            throw new InvalidOperationException($"request {sequence.RequestId} is {sequence.Status}, not reserved");
        }
    }

    /// <summary>Ends a sequence (finished or cancelled; running, waiting or reserved) and releases its blocks at once.</summary>
    public void Finish(SequenceState sequence)
    {
        switch (sequence.Status)
        {
            case SequenceStatus.Finished:
                return;
            case SequenceStatus.Running:
                _running.Remove(sequence);
                break;
            case SequenceStatus.Reserved:
                ReservedCount--;
                break;
            default:
                _waiting.Remove(sequence);
                break;
        }

        _pool.Release(sequence.Blocks);
        sequence.Status = SequenceStatus.Finished;
    }

    /// <summary>Plans the next step. The returned object is reused by the next call.</summary>
    public SchedulerStep Schedule()
    {
        _step.Clear();
        int budget = _options.MaxNumBatchedTokens;
        double maxMs = _options.MaxStepMs;
        bool timed = maxMs > 0 && Cost.IsReady;

        // With a step-time budget: the prefill tokens that fit beside this step's decodes, and never fewer than the minimum.
        // A step without decodes has no inter-token latency to protect: its prefill is bounded by the token budget only
        // (cutting a lone prompt into budget-sized chunks re-reads every weight per chunk and delays its first token).
        int prefillLeft = int.MaxValue;
        if (timed)
        {
            int decoding = 0;
            foreach (SequenceState r in _running)
            {
                decoding += r.Tokens.Count - r.ComputedTokens == 1 ? 1 : 0;
            }

            prefillLeft = decoding == 0 ? int.MaxValue : Math.Max(Cost.PrefillTokensWithin(maxMs, decoding), _options.MinPrefillTokens);
        }

        for (int i = 0; i < _running.Count && budget > 0; i++)
        {
            SequenceState s = _running[i];
            int n = ChunkOf(s, budget, prefillLeft, out bool prefill);
            if (n <= 0)
            {
                continue;
            }

            bool preemptedSelf = false;
            while (!_pool.TryReserve(s.Blocks, s.ComputedTokens + n))
            {
                SequenceState victim = _running[^1];
                _running.RemoveAt(_running.Count - 1);
                Preempt(victim);
                if (victim == s)
                {
                    preemptedSelf = true;
                    break;
                }
            }

            if (preemptedSelf)
            {
                break;
            }

            _step.Add(new ScheduledChunk(s, s.ComputedTokens, n, s.ComputedTokens + n == s.Tokens.Count));
            budget -= n;
            prefillLeft -= prefill ? n : 0;
        }

        // Admit nothing in a step that had to preempt: the pool is short of blocks.
        while (_step.Preempted == 0 && _waiting.First is { } node && _running.Count < _options.MaxNumSeqs && budget > 0 && Admits(timed, prefillLeft))
        {
            if (_step.IsEmpty && _running.Count == 0 && !Fits(node.Value, budget, prefillLeft) && FirstFitting(budget, prefillLeft) is { } fitting)
            {
                // Nothing runs and the head cannot get its blocks: those it waits for are held by sequences queued behind
                // it with imported KV, which only running frees. One of them goes first, else nothing would run again.
                _waiting.Remove(fitting);
                _waiting.AddFirst(fitting);
                node = fitting;
            }

            SequenceState s = node.Value;
            int hit = 0;
            bool lookedUp = s.Blocks.Count == 0;
            if (lookedUp)
            {
                // Never take the whole sequence from the cache: its last token must run to give logits.
                int bs = _pool.BlockSize;
                ReadOnlySpan<ulong> hashes = s.BlockHashes((s.Tokens.Count - 1) / bs, bs);
                hit = _pool.CachedPrefixBlocks(hashes);
                _pool.AcquireCached(hashes[..hit], s.Blocks);
                hit *= bs;
                s.ComputedTokens = hit;
                s.CommittedBlocks = hit / bs;
            }

            int n = ChunkOf(s, budget, prefillLeft, out bool prefill);
            if (!_pool.TryReserve(s.Blocks, s.ComputedTokens + n))
            {
                if (lookedUp)
                {
                    _pool.Release(s.Blocks);
                    s.ComputedTokens = 0;
                    s.CommittedBlocks = 0;
                }

                break;
            }

            if (lookedUp)
            {
                PrefixQueryTokens += s.Tokens.Count;
                PrefixHitTokens += hit;
                if (s.CachedPromptTokens < 0)
                {
                    s.CachedPromptTokens = Math.Min(hit, s.PromptLength);
                }
            }

            _waiting.RemoveFirst();
            s.Status = SequenceStatus.Running;
            _running.Add(s);
            _step.Add(new ScheduledChunk(s, s.ComputedTokens, n, s.ComputedTokens + n == s.Tokens.Count));
            budget -= n;
            prefillLeft -= prefill ? n : 0;
        }

        if (timed)
        {
            _step.PredictedMs = Cost.Predict(_step.PrefillTokens, _step.DecodeTokens);
        }

        return _step;
    }

    /// <summary>
    /// Tokens a sequence computes this step: all it has left, at most the step's token budget, and, while more than one
    /// token is left (<paramref name="prefill"/>: a prompt, not a decode token), at most the prefill the step-time budget leaves.
    /// </summary>
    private static int ChunkOf(SequenceState s, int budget, int prefillLeft, out bool prefill)
    {
        int left = s.Tokens.Count - s.ComputedTokens;
        prefill = left > 1;
        return Math.Min(left, prefill ? Math.Min(budget, prefillLeft) : budget);
    }

    /// <summary>Whether a waiting sequence's first chunk gets its blocks from the free ones now (a new one's cached prefix not counted: it may need fewer).</summary>
    private bool Fits(SequenceState s, int budget, int prefillLeft)
    {
        int n = ChunkOf(s, budget, prefillLeft, out _);
        return _pool.BlocksFor(s.ComputedTokens + n) - s.Blocks.Count <= _pool.FreeCount;
    }

    /// <summary>The first waiting sequence that already holds blocks (imported KV) and whose first chunk fits; null when none.</summary>
    private LinkedListNode<SequenceState>? FirstFitting(int budget, int prefillLeft)
    {
        for (LinkedListNode<SequenceState>? n = _waiting.First; n is not null; n = n.Next)
        {
            if (n.Value.Blocks.Count > 0 && Fits(n.Value, budget, prefillLeft))
            {
                return n;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether the step-time budget lets one more sequence in: prefill tokens are left in this step, and either the
    /// running batch with it, every sequence decoding, plus a minimum prefill chunk is predicted within the budget (each
    /// admitted sequence adds a decode to every later step until it ends), or the batch is below its floor
    /// (<see cref="StepCostModel.EfficientBatch"/>: a budget too small for the machine costs latency, not throughput).
    /// </summary>
    private bool Admits(bool timed, int prefillLeft) =>
        !timed || (prefillLeft > 0 && (_running.Count < Cost.EfficientBatch || Cost.Predict(_options.MinPrefillTokens, _running.Count + 1) <= _options.MaxStepMs));

    /// <summary>
    /// Records that <paramref name="step"/> ran: each chunk's keys and values are in the cache, and blocks it
    /// filled join the prefix cache. Call before appending sampled tokens.
    /// </summary>
    public void Complete(SchedulerStep step)
    {
        int bs = _pool.BlockSize;
        foreach (ScheduledChunk c in step.Chunks)
        {
            SequenceState s = c.Sequence;
            if (s.Status != SequenceStatus.Running)
            {
                continue;
            }

            s.ComputedTokens = c.StartPos + c.TokenCount;
            int full = s.ComputedTokens / bs;
            if (full > s.CommittedBlocks)
            {
                _pool.Commit(s.Blocks, s.BlockHashes(full, bs), s.LocalHashes(full, bs), s.CommittedBlocks, full);
                s.CommittedBlocks = full;
            }
        }
    }

    private void Preempt(SequenceState victim)
    {
        _pool.Release(victim.Blocks);
        victim.ComputedTokens = 0;
        victim.CommittedBlocks = 0;
        victim.Status = SequenceStatus.Waiting;
        victim.Preemptions++;
        Preemptions++;
        _step.Preempted++;
        _waiting.AddFirst(victim);
    }
}

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
/// finds most of them again) and it goes back to the front of the queue to be recomputed.
/// Not thread-safe: one engine thread owns it.
/// </summary>
public sealed class Scheduler
{
    private readonly SchedulerOptions _options;
    private readonly KvBlockPool _pool;
    private readonly List<SequenceState> _running = [];
    private readonly LinkedList<SequenceState> _waiting = new();
    private readonly SchedulerStep _step = new();
    private long _arrivals;

    public Scheduler(SchedulerOptions options, KvBlockPool pool)
    {
        _options = options.Validate();
        _pool = pool;
    }

    public SchedulerOptions Options => _options;

    public KvBlockPool Pool => _pool;

    public int RunningCount => _running.Count;

    public int WaitingCount => _waiting.Count;

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
    /// Queues a sequence whose first <paramref name="computedTokens"/> tokens already have their keys and values
    /// (written by the caller into blocks reserved here, e.g. imported from another engine). Reserves the blocks
    /// and returns true, then the caller writes them; or returns false with nothing reserved when the pool has
    /// too few free blocks (the caller then queues it normally and it is prefilled here). Its full blocks join
    /// the prefix cache after its first step.
    /// </summary>
    public bool TryEnqueueComputed(SequenceState sequence, int computedTokens)
    {
        if (sequence.Status != SequenceStatus.Waiting || sequence.Blocks.Count != 0)
        {
            throw new InvalidOperationException($"request {sequence.RequestId} was already scheduled");
        }

        if (computedTokens < 1 || computedTokens >= sequence.Tokens.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(computedTokens), $"{computedTokens} computed tokens of a sequence of {sequence.Tokens.Count} (at least its last token must be left to run)");
        }

        if (!_pool.TryReserve(sequence.Blocks, computedTokens))
        {
            return false;
        }

        sequence.ComputedTokens = computedTokens;
        sequence.CachedPromptTokens = 0;
        sequence.Arrival = _arrivals++;
        _waiting.AddLast(sequence);
        return true;
    }

    /// <summary>Ends a sequence (finished or cancelled, running or waiting) and releases its blocks at once.</summary>
    public void Finish(SequenceState sequence)
    {
        if (sequence.Status == SequenceStatus.Finished)
        {
            return;
        }

        if (sequence.Status == SequenceStatus.Running)
        {
            _running.Remove(sequence);
        }
        else
        {
            _waiting.Remove(sequence);
        }

        _pool.Release(sequence.Blocks);
        sequence.Status = SequenceStatus.Finished;
    }

    /// <summary>Plans the next step. The returned object is reused by the next call.</summary>
    public SchedulerStep Schedule()
    {
        _step.Clear();
        int budget = _options.MaxNumBatchedTokens;
        for (int i = 0; i < _running.Count && budget > 0; i++)
        {
            SequenceState s = _running[i];
            int n = Math.Min(s.Tokens.Count - s.ComputedTokens, budget);
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
        }

        // Admit nothing in a step that had to preempt: the pool is short of blocks.
        while (_step.Preempted == 0 && _waiting.First is { } node && _running.Count < _options.MaxNumSeqs && budget > 0)
        {
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

            int n = Math.Min(s.Tokens.Count - s.ComputedTokens, budget);
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
        }

        return _step;
    }

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

using System.Buffers;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Llm.Routing;

/// <summary>
/// The KV-aware router: picks, for each request, the worker with the lowest cost, counting the prompt
/// blocks it already caches (<see cref="Index"/>), the load the router itself charged it (active prefill
/// tokens, active blocks) and its own load reports. Load is charged at <see cref="RouteAsync"/> and
/// released through the returned <see cref="RoutingDecision"/>. When every worker is saturated, requests
/// wait in a bounded FIFO queue, then get <see cref="RouterOverloadedException"/>. Thread-safe; the cost
/// formula and invariants are in Routing/README.md. Feed it with <see cref="ApplyEvent"/>,
/// <see cref="UpdateLoad"/>, <see cref="AddWorker"/> and <see cref="RemoveWorker"/> (or let a
/// Dynamo.Components' KvRouterService do it from the runtime).
/// </summary>
public sealed partial class KvRouter
{
    private const int StackHashBlocks = 256;

    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Random _random;
    private readonly Dictionary<long, WorkerState> _workers = [];
    private readonly List<WorkerState?> _slots = [];
    private readonly Stack<int> _freeSlots = new();
    private readonly PrefixTable _inflight = new();
    private readonly PrefixTable _recent = new();
    private readonly Queue<(ulong[] Hashes, int Count, WorkerState Worker, long Expires)> _recentQueue = new();
    private readonly Stack<ulong[]> _recentArrays = new();
    private const int MaxRecent = 4096;
    private readonly OverlapScores _scores = new();
    private readonly LinkedList<Waiter> _queue = new();
    private WorkerState[] _list = [];
    private double[] _costs = new double[16];
    private double[] _weights = new double[16];
    private long _decisions;
    private long _promptTokens;
    private long _predictedHitTokens;
    private long _reportedDecisions;
    private long _reportedPredicted;
    private long _reportedActual;
    private long _queued;
    private long _rejections;
    private int _inFlight;

    /// <summary>Creates a router with no workers.</summary>
    public KvRouter(KvRouterOptions? options = null, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        Options = (options ?? KvRouterOptions.Default).Validate();
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        _random = Options.Seed is int seed ? new Random(seed) : new Random();
    }

    /// <summary>The settings.</summary>
    public KvRouterOptions Options { get; }

    /// <summary>The KV index the router reads (fed through <see cref="ApplyEvent"/> and <see cref="LoadDump"/>).</summary>
    public KvIndex Index { get; } = new();

    /// <summary>The workers, by id.</summary>
    public IReadOnlyList<long> Workers
    {
        get
        {
            lock (_gate)
            {
                return [.. _workers.Keys.Order()];
            }
        }
    }

    /// <summary>
    /// Adds a worker (or updates its batch budget): <paramref name="batchBudgetTokens"/> is its
    /// max-num-batched-tokens when known, else <see cref="KvRouterOptions.DefaultBatchBudget"/>. True when new.
    /// </summary>
    public bool AddWorker(long workerId, int? batchBudgetTokens = null)
    {
        if (batchBudgetTokens is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(batchBudgetTokens), batchBudgetTokens, "a batch budget must be at least 1 token");
        }

        lock (_gate)
        {
            if (_workers.TryGetValue(workerId, out WorkerState? existing))
            {
                existing.BatchBudget = batchBudgetTokens ?? existing.BatchBudget;
                return false;
            }

            int slot;
            if (_freeSlots.Count > 0)
            {
                slot = _freeSlots.Pop();
            }
            else
            {
                slot = _slots.Count;
                _slots.Add(null);
            }

            var worker = new WorkerState(workerId, slot, batchBudgetTokens ?? Options.DefaultBatchBudget);
            _slots[slot] = worker;
            _workers[workerId] = worker;
            _list = [.. _workers.Values.OrderBy(w => w.WorkerId)];
            Index.AddWorker(workerId);
            Pump();
            return true;
        }
    }

    /// <summary>
    /// Removes a worker at once: from routing, from the KV index, and its in-flight load (their decisions
    /// then release nothing). Queued requests fail when no worker is left. False when unknown.
    /// </summary>
    public bool RemoveWorker(long workerId)
    {
        lock (_gate)
        {
            Index.RemoveWorker(workerId);
            if (!_workers.Remove(workerId, out WorkerState? worker))
            {
                return false;
            }

            worker.Removed = true;
            foreach (RoutingDecision d in worker.Decisions)
            {
                for (int i = 0; i < d.HashCount; i++)
                {
                    _inflight.Decrement(d.Hashes[i], worker.Slot);
                }
            }

            worker.Decisions.Clear();
            foreach (var entry in _recentQueue)
            {
                if (entry.Worker == worker)
                {
                    for (int i = 0; i < entry.Count; i++)
                    {
                        _recent.Decrement(entry.Hashes[i], worker.Slot);
                    }
                }
            }

            _inFlight -= worker.InFlight;
            _slots[worker.Slot] = null;
            _freeSlots.Push(worker.Slot);
            _list = [.. _workers.Values.OrderBy(w => w.WorkerId)];
            Pump();
            return true;
        }
    }

    /// <summary>
    /// Applies a KV event to the index (see <see cref="KvIndex.Apply"/>). Events of a worker not added are
    /// ignored and reported <see cref="KvApplyResult.Stale"/>. On <see cref="KvApplyResult.Gap"/> the
    /// worker is in <see cref="KvIndex.WorkersNeedingResync"/>: answer with <see cref="LoadDump"/>.
    /// </summary>
    public KvApplyResult ApplyEvent(KvEvent kvEvent)
    {
        ArgumentNullException.ThrowIfNull(kvEvent);
        lock (_gate)
        {
            return _workers.ContainsKey(kvEvent.WorkerId) ? Index.Apply(kvEvent) : KvApplyResult.Stale;
        }
    }

    /// <summary>Rebuilds a worker's part of the index from its dump (ignored for a worker not added).</summary>
    public void LoadDump(long workerId, KvEventDump dump)
    {
        ArgumentNullException.ThrowIfNull(dump);
        lock (_gate)
        {
            if (_workers.ContainsKey(workerId))
            {
                Index.LoadDump(workerId, dump);
            }
        }
    }

    /// <summary>
    /// Takes a worker's own load report (ignored for a worker not added): its KV blocks in use count as its
    /// active blocks when above the router's own count, fading to nothing over
    /// <see cref="KvRouterOptions.StaleMetricsDecay"/> unless a newer report comes.
    /// </summary>
    public void UpdateLoad(WorkerLoad load)
    {
        ArgumentNullException.ThrowIfNull(load);
        lock (_gate)
        {
            if (_workers.TryGetValue(load.WorkerId, out WorkerState? worker))
            {
                worker.ReportedBlocksUsed = load.KvBlocksUsed;
                worker.ReportedBlocksTotal = load.KvBlocksTotal;
                worker.ReportedAt = _time.GetTimestamp();
                worker.HasReport = true;
            }
        }
    }

    /// <summary>
    /// Chooses a worker for a prompt of <paramref name="tokens"/> and charges it the request's load. Completes
    /// at once unless every worker is saturated (or others already wait): then the request waits its turn
    /// in the queue. Throws <see cref="RouterOverloadedException"/> (in the task) when the queue is full or
    /// there is no worker; <see cref="OperationCanceledException"/> when cancelled while waiting. The caller
    /// must complete or dispose the decision.
    /// </summary>
    public ValueTask<RoutingDecision> RouteAsync(ReadOnlySpan<int> tokens, RouteOverrides? overrides = null, CancellationToken cancellationToken = default)
    {
        double weight = overrides?.OverlapScoreWeight ?? Options.OverlapScoreWeight;
        double temperature = overrides?.Temperature ?? Options.Temperature;
        if (!double.IsFinite(weight) || weight < 0)
        {
            return ValueTask.FromException<RoutingDecision>(new ArgumentOutOfRangeException(nameof(overrides), weight, "the overlap score weight must be a finite number, 0 or more"));
        }

        if (!double.IsFinite(temperature) || temperature < 0)
        {
            return ValueTask.FromException<RoutingDecision>(new ArgumentOutOfRangeException(nameof(overrides), temperature, "the router temperature must be a finite number, 0 or more"));
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<RoutingDecision>(cancellationToken);
        }

        int bs = Options.BlockSize;
        int blocks = tokens.Length / bs;
        ulong[] hashes = ArrayPool<ulong>.Shared.Rent(Math.Max(blocks, 1));
        ulong[]? rentedLocals = blocks > StackHashBlocks ? ArrayPool<ulong>.Shared.Rent(blocks) : null;
        Span<ulong> locals = rentedLocals ?? stackalloc ulong[StackHashBlocks];
        BlockHasher.SequenceHashes(tokens, bs, hashes, locals);
        if (rentedLocals is not null)
        {
            ArrayPool<ulong>.Shared.Return(rentedLocals);
        }

        var request = new Request(hashes, blocks, tokens.Length, weight, temperature, overrides?.RequestId, overrides?.AllowedWorkers);
        Waiter waiter;
        lock (_gate)
        {
            bool noWorker = !AnyCandidate(request);
            if (noWorker || (_queue.Count >= Options.MaxQueue && (_queue.Count > 0 || !AnyUnsaturated(request))))
            {
                _rejections++;
                ArrayPool<ulong>.Shared.Return(hashes);
                string why = noWorker ? "no worker is available" : $"every worker is saturated and {_queue.Count} requests already wait";
                Log.Rejected(_logger, request.RequestId, why);
                return ValueTask.FromException<RoutingDecision>(new RouterOverloadedException($"the router cannot take the request: {why}", Options.RetryAfter));
            }

            if (_queue.Count == 0 && AnyUnsaturated(request))
            {
                return new ValueTask<RoutingDecision>(Decide(request));
            }

            waiter = new Waiter(request);
            waiter.Node = _queue.AddLast(waiter);
            _queued++;
        }

        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.UnsafeRegister(static (state, token) => ((KvRouter)((object[])state!)[0]).CancelWaiter((Waiter)((object[])state)[1], token), new object[] { this, waiter });
        }

        return new ValueTask<RoutingDecision>(waiter.Completion.Task);
    }

    /// <summary>A snapshot of the counters and of each worker's load.</summary>
    public RouterStats GetStats()
    {
        lock (_gate)
        {
            long now = _time.GetTimestamp();
            return new RouterStats
            {
                Decisions = _decisions,
                PromptTokens = _promptTokens,
                PredictedHitTokens = _predictedHitTokens,
                ReportedDecisions = _reportedDecisions,
                ReportedPredictedHitTokens = _reportedPredicted,
                ReportedActualHitTokens = _reportedActual,
                QueueDepth = _queue.Count,
                Queued = _queued,
                Rejections = _rejections,
                InFlight = _inFlight,
                Workers = [.. _list.Select(w => new WorkerLoadSnapshot(
                    w.WorkerId, w.InFlight, w.ActivePrefillTokens, w.DistinctBlocks + w.PartialBlocks, Reported(w, now), w.BatchBudget, Saturated(w), Index.BlockCountOf(w.WorkerId)))],
            };
        }
    }

    internal void OnFirstToken(RoutingDecision decision)
    {
        lock (_gate)
        {
            if (decision.State != RoutingDecision.DecisionState.Prefill)
            {
                return;
            }

            decision.State = RoutingDecision.DecisionState.Decoding;
            if (!decision.Worker.Removed)
            {
                decision.Worker.ActivePrefillTokens -= decision.ChargedPrefillTokens;
                Pump();
            }
        }
    }

    internal void OnComplete(RoutingDecision decision, int? actualCachedTokens)
    {
        lock (_gate)
        {
            if (decision.State == RoutingDecision.DecisionState.Completed)
            {
                return;
            }

            Release(decision, completed: actualCachedTokens is not null);
            if (actualCachedTokens is int actual)
            {
                _reportedDecisions++;
                _reportedPredicted += decision.PredictedCachedTokens;
                _reportedActual += actual;
            }

            Pump();
        }
    }

    private void Release(RoutingDecision decision, bool completed = false)
    {
        WorkerState worker = decision.Worker;
        if (!worker.Removed)
        {
            if (decision.State == RoutingDecision.DecisionState.Prefill)
            {
                worker.ActivePrefillTokens -= decision.ChargedPrefillTokens;
            }

            for (int i = 0; i < decision.HashCount; i++)
            {
                if (_inflight.Decrement(decision.Hashes[i], worker.Slot))
                {
                    worker.DistinctBlocks--;
                }
            }

            if (decision.PromptTokens % Options.BlockSize != 0)
            {
                worker.PartialBlocks--;
            }

            worker.InFlight--;
            _inFlight--;
            worker.Decisions.Remove(decision);
            if (completed && Options.CountInflightPrefixes && Options.RecentPrefixWindow > TimeSpan.Zero && decision.HashCount > 0)
            {
                // The prefix is on the worker now; its KV events may not have reached the index yet.
                int count = decision.HashCount;
                ulong[] kept = _recentArrays.TryPop(out ulong[]? reused) && reused.Length >= count ? reused : new ulong[Math.Max(count, 64)];
                decision.Hashes.AsSpan(0, count).CopyTo(kept);
                for (int i = 0; i < count; i++)
                {
                    _recent.Increment(kept[i], worker.Slot);
                }

                long now = _time.GetTimestamp();
                _recentQueue.Enqueue((kept, count, worker, now + (long)(Options.RecentPrefixWindow.TotalSeconds * _time.TimestampFrequency)));
                if (_recentQueue.Count > MaxRecent)
                {
                    ExpireRecent(long.MaxValue, _recentQueue.Count - MaxRecent);
                }
            }
        }

        decision.State = RoutingDecision.DecisionState.Completed;
        ArrayPool<ulong>.Shared.Return(decision.Hashes);
    }

    /// <summary>Ends the recent-prefix windows that are over, at most <paramref name="limit"/> of them (under the gate).</summary>
    private void ExpireRecent(long now, int limit = int.MaxValue)
    {
        while (limit-- > 0 && _recentQueue.TryPeek(out var entry) && entry.Expires <= now)
        {
            _recentQueue.Dequeue();
            if (!entry.Worker.Removed)
            {
                for (int i = 0; i < entry.Count; i++)
                {
                    _recent.Decrement(entry.Hashes[i], entry.Worker.Slot);
                }
            }

            _recentArrays.Push(entry.Hashes);
        }
    }

    private void CancelWaiter(Waiter waiter, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (waiter.Node?.List is null)
            {
                return;
            }

            _queue.Remove(waiter.Node);
            ArrayPool<ulong>.Shared.Return(waiter.Request.Hashes);
            waiter.Completion.TrySetCanceled(cancellationToken);
        }
    }

    // Under _gate: hands queued requests to workers while one has room, first come first served.
    private void Pump()
    {
        while (_queue.First is { } node)
        {
            Waiter waiter = node.Value;
            if (!AnyCandidate(waiter.Request))
            {
                _queue.RemoveFirst();
                waiter.Registration.Unregister();
                _rejections++;
                ArrayPool<ulong>.Shared.Return(waiter.Request.Hashes);
                waiter.Completion.TrySetException(new RouterOverloadedException("the router cannot take the request: no worker is available", Options.RetryAfter));
                continue;
            }

            if (!AnyUnsaturated(waiter.Request))
            {
                return;
            }

            _queue.RemoveFirst();
            waiter.Registration.Unregister();
            RoutingDecision decision = Decide(waiter.Request);
            if (!waiter.Completion.TrySetResult(decision))
            {
                Release(decision);
            }
        }
    }

    private static bool Allows(in Request request, WorkerState worker) => request.Allowed is null || request.Allowed.Contains(worker.WorkerId);

    // A loop, not LINQ: no closure on the decision path.
    private bool AnyCandidate(in Request request)
    {
        foreach (WorkerState w in _list)
        {
            if (Allows(request, w))
            {
                return true;
            }
        }

        return false;
    }

    private bool Saturated(WorkerState worker) => worker.ActivePrefillTokens > Options.Saturation * worker.BatchBudget;

    private bool AnyUnsaturated(in Request request)
    {
        foreach (WorkerState w in _list)
        {
            if (!Saturated(w) && Allows(request, w))
            {
                return true;
            }
        }

        return false;
    }

    private double Reported(WorkerState worker, long now)
    {
        if (!worker.HasReport)
        {
            return 0;
        }

        double fade = 1 - (_time.GetElapsedTime(worker.ReportedAt, now) / Options.StaleMetricsDecay);
        return fade <= 0 ? 0 : worker.ReportedBlocksUsed * Math.Min(fade, 1);
    }

    // Under _gate, with at least one unsaturated worker: the cost of every worker, the choice, the charge.
    private RoutingDecision Decide(in Request request)
    {
        int bs = Options.BlockSize;
        ReadOnlySpan<ulong> hashes = request.Hashes.AsSpan(0, request.Blocks);
        WorkerState[] list = _list;
        foreach (WorkerState w in list)
        {
            w.IndexedOverlap = 0;
            w.InflightOverlap = 0;
            w.RecentOverlap = 0;
        }

        if (_recentQueue.Count > 0)
        {
            ExpireRecent(_time.GetTimestamp());
            if (_recent.Count > 0)
            {
                _recent.Match(hashes);
                foreach (int slot in _recent.MatchedSlots)
                {
                    if (_slots[slot] is { } w)
                    {
                        w.RecentOverlap = _recent.DepthOf(slot);
                    }
                }
            }
        }

        Index.FindMatches(hashes, _scores);
        ReadOnlySpan<long> ids = _scores.WorkerIds;
        ReadOnlySpan<int> depths = _scores.Blocks;
        for (int i = 0; i < ids.Length; i++)
        {
            if (_workers.TryGetValue(ids[i], out WorkerState? w))
            {
                w.IndexedOverlap = depths[i];
            }
        }

        _inflight.Match(hashes);
        foreach (int slot in _inflight.MatchedSlots)
        {
            if (_slots[slot] is { } w)
            {
                w.InflightOverlap = _inflight.DepthOf(slot);
            }
        }

        if (_costs.Length < list.Length)
        {
            _costs = new double[list.Length * 2];
        }

        int requestBlocks = (request.PromptTokens + bs - 1) / bs;
        long now = _time.GetTimestamp();
        double min = double.PositiveInfinity, max = double.NegativeInfinity;
        for (int i = 0; i < list.Length; i++)
        {
            WorkerState w = list[i];
            if (Saturated(w) || !Allows(request, w))
            {
                _costs[i] = double.NaN;
                continue;
            }

            int overlap = Overlap(w);
            double prefillBlocks = (request.PromptTokens - (overlap * bs) + w.ActivePrefillTokens) / (double)bs;
            double decodeBlocks = Math.Max(w.DistinctBlocks + w.PartialBlocks, Reported(w, now)) + (requestBlocks - w.InflightOverlap);
            double cost = (request.Weight * prefillBlocks) + decodeBlocks + EvictedBlocks(w, requestBlocks - overlap);
            _costs[i] = cost;
            min = Math.Min(min, cost);
            max = Math.Max(max, cost);
        }

        int chosen = request.Temperature > 0 ? Sample(list.Length, min, max, request.Temperature) : Lowest(list.Length, min);
        WorkerState worker = list[chosen];
        int chosenOverlap = Overlap(worker);
        long charged = request.PromptTokens - ((long)chosenOverlap * bs);
        worker.ActivePrefillTokens += charged;
        worker.InFlight++;
        _inFlight++;
        for (int i = 0; i < hashes.Length; i++)
        {
            if (_inflight.Increment(hashes[i], worker.Slot))
            {
                worker.DistinctBlocks++;
            }
        }

        if (request.PromptTokens % bs != 0)
        {
            worker.PartialBlocks++;
        }

        var decision = new RoutingDecision(this, worker, request.PromptTokens, chosenOverlap, worker.IndexedOverlap, _costs[chosen], request.Hashes, request.Blocks, charged, bs);
        worker.Decisions.Add(decision);
        _decisions++;
        _promptTokens += request.PromptTokens;
        _predictedHitTokens += decision.PredictedCachedTokens;
        Log.Routed(_logger, request.RequestId, worker.WorkerId, chosenOverlap, worker.IndexedOverlap, decision.Cost, request.PromptTokens);
        return decision;
    }

    // Cached blocks that storing the request's new blocks on w would push out of its (reported) pool.
    private int EvictedBlocks(WorkerState w, int newBlocks) =>
        w.ReportedBlocksTotal <= 0 ? 0 : Math.Max(0, Index.BlockCountOf(w.WorkerId) + newBlocks - w.ReportedBlocksTotal);

    private int Overlap(WorkerState w) => Options.CountInflightPrefixes ? Math.Max(w.IndexedOverlap, Math.Max(w.InflightOverlap, w.RecentOverlap)) : w.IndexedOverlap;

    private int Lowest(int count, double min)
    {
        int chosen = -1, ties = 0;
        for (int i = 0; i < count; i++)
        {
            if (_costs[i] == min && _random.Next(++ties) == 0)
            {
                chosen = i;
            }
        }

        return chosen;
    }

    private int Sample(int count, double min, double max, double temperature)
    {
        if (_weights.Length < count)
        {
            _weights = new double[_costs.Length];
        }

        double range = max - min;
        double total = 0;
        for (int i = 0; i < count; i++)
        {
            double c = _costs[i];
            double weight = double.IsNaN(c) ? 0 : range > 0 ? Math.Exp(-(c - min) / range / temperature) : 1;
            _weights[i] = weight;
            total += weight;
        }

        double pick = _random.NextDouble() * total;
        int last = -1;
        for (int i = 0; i < count; i++)
        {
            if (_weights[i] <= 0)
            {
                continue;
            }

            last = i;
            pick -= _weights[i];
            if (pick < 0)
            {
                break;
            }
        }

        return last;
    }

    internal sealed class WorkerState(long workerId, int slot, int batchBudget)
    {
        public long WorkerId { get; } = workerId;

        public int Slot { get; } = slot;

        public int BatchBudget { get; set; } = batchBudget;

        public long ActivePrefillTokens { get; set; }

        public long DistinctBlocks { get; set; }

        public long PartialBlocks { get; set; }

        public int InFlight { get; set; }

        public HashSet<RoutingDecision> Decisions { get; } = [];

        public int ReportedBlocksUsed { get; set; }

        public int ReportedBlocksTotal { get; set; }

        public long ReportedAt { get; set; }

        public bool HasReport { get; set; }

        public bool Removed { get; set; }

        public int IndexedOverlap { get; set; }

        public int InflightOverlap { get; set; }

        /// <summary>Leading blocks of the request that requests completed on this worker within the recent-prefix window held.</summary>
        public int RecentOverlap { get; set; }
    }

    private readonly record struct Request(ulong[] Hashes, int Blocks, int PromptTokens, double Weight, double Temperature, string? RequestId, IReadOnlySet<long>? Allowed);

    private sealed class Waiter(Request request)
    {
        public Request Request { get; } = request;

        public TaskCompletionSource<RoutingDecision> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public LinkedListNode<Waiter>? Node { get; set; }

        public CancellationTokenRegistration Registration { get; set; }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6101, Level = LogLevel.Debug, Message = "Routed request {RequestId} to worker {WorkerId}: overlap {OverlapBlocks} blocks ({IndexedBlocks} indexed), cost {Cost}, {PromptTokens} prompt tokens")]
        public static partial void Routed(ILogger logger, string? requestId, long workerId, int overlapBlocks, int indexedBlocks, double cost, int promptTokens);

        [LoggerMessage(EventId = 6102, Level = LogLevel.Debug, Message = "Rejected request {RequestId}: {Reason}")]
        public static partial void Rejected(ILogger logger, string? requestId, string reason);
    }
}

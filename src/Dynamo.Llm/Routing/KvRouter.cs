using System.Buffers;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Llm.Routing;

/// <summary>
/// The KV-aware router: picks, for each request, the worker with the lowest <see cref="KvCost"/>, counting the
/// prompt blocks it already caches (<see cref="Index"/>), the load the router itself charged it (active
/// prefill tokens, active blocks: <see cref="InflightLedger"/>) and its own load reports. Load is charged at
/// <see cref="RouteAsync(ReadOnlySpan{int}, RouteOverrides?, CancellationToken)"/> and released through the
/// returned <see cref="RoutingDecision"/>. When every worker is saturated, requests wait in the
/// <see cref="AdmissionQueue"/>, then get <see cref="RouterRejectedException"/>. Thread-safe: one gate guards
/// the workers (<see cref="WorkerSlots"/>), the ledger, the queue and the counters (<see cref="RouterCounters"/>);
/// the cost formula and invariants are in Routing/README.md. Feed it with <see cref="ApplyEvent"/>,
/// <see cref="UpdateLoad"/>, <see cref="AddWorker"/> and <see cref="RemoveWorker"/> (or let Dynamo.Components'
/// KvRouterService do it from the runtime). As an <see cref="IWorkerRouter"/> it routes among a request's candidates.
/// </summary>
public sealed partial class KvRouter : IWorkerRouter
{
    private const int StackHashBlocks = 256;

    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Random _random;
    private readonly WorkerSlots _workers = new();
    private readonly InflightLedger _ledger;
    private readonly AdmissionQueue _queue = new();
    private readonly RouterCounters _counters = new();
    private readonly OverlapScores _scores = new();
    private double[] _costs = new double[16];
    private double[] _weights = new double[16];
    private int[] _overlapCounts = new int[64];

    /// <summary>Creates a router with no workers.</summary>
    public KvRouter(KvRouterOptions? options = null, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        Options = (options ?? KvRouterOptions.Default).Validate();
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
        _random = Options.Seed is int seed ? new Random(seed) : new Random();
        _ledger = new InflightLedger(Options, _time);
    }

    /// <inheritdoc/>
    public string Name => RouterModes.Kv;

    /// <summary>
    /// Raised (outside the router's lock) when a worker's routing accuracy fell below
    /// <see cref="KvRouterOptions.ResyncAccuracy"/>: the worker is now in <see cref="KvIndex.WorkersNeedingResync"/>;
    /// answer with <see cref="LoadDump"/> (KvRouterService fetches its dump; the simulator takes its mocker's).
    /// </summary>
    public event Action<RoutingTarget>? ResyncNeeded;

    /// <summary>The settings.</summary>
    public KvRouterOptions Options { get; }

    /// <summary>The KV index the router reads (fed through <see cref="ApplyEvent"/> and <see cref="LoadDump"/>).</summary>
    public KvIndex Index { get; } = new();

    /// <summary>The routing targets (workers, and the data-parallel ranks of workers that have several), in order.</summary>
    public IReadOnlyList<RoutingTarget> Workers
    {
        get
        {
            lock (_gate)
            {
                return [.. _workers.Ids.Order()];
            }
        }
    }

    /// <summary>
    /// Adds a worker, or one data-parallel rank of a worker (a long converts to its rank 0), or updates its batch
    /// budget: <paramref name="batchBudgetTokens"/> is its max-num-batched-tokens when known, else
    /// <see cref="KvRouterOptions.DefaultBatchBudget"/>. True when new.
    /// </summary>
    public bool AddWorker(RoutingTarget workerId, int? batchBudgetTokens = null)
    {
        if (batchBudgetTokens is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(batchBudgetTokens), batchBudgetTokens, "a batch budget must be at least 1 token");
        }

        lock (_gate)
        {
            if (_workers.TryGet(workerId, out KvWorkerState? existing))
            {
                existing.BatchBudget = batchBudgetTokens ?? existing.BatchBudget;
                return false;
            }

            KvWorkerState added = _workers.Add(workerId, batchBudgetTokens ?? Options.DefaultBatchBudget);
            bool ranked = workerId.DpRank != 0 || _workers.Sorted.Any(w => w.WorkerId == workerId.WorkerId && w.Ranked);
            foreach (KvWorkerState w in _workers.Sorted)
            {
                if (w.WorkerId == workerId.WorkerId)
                {
                    w.Ranked |= ranked;
                }
            }

            added.Ranked = ranked;
            Index.AddWorker(workerId);
            added.IndexedBlocks = Index.BlockCountOf(workerId);
            Pump();
            return true;
        }
    }

    /// <summary>
    /// Removes a worker, with every data-parallel rank of it, at once: from routing, from the KV index, and its
    /// in-flight load (their decisions then release nothing). Queued requests fail when no worker is left. False
    /// when unknown.
    /// </summary>
    public bool RemoveWorker(long workerId)
    {
        lock (_gate)
        {
            RoutingTarget[] targets = [.. _workers.Ids.Where(t => t.WorkerId == workerId)];
            foreach (RoutingTarget target in Index.Workers.Where(t => t.WorkerId == workerId))
            {
                Index.RemoveWorker(target);
            }

            foreach (RoutingTarget target in targets)
            {
                KvWorkerState worker = _workers.Remove(target)!;
                worker.Removed = true;
                _ledger.Forget(worker, worker.Decisions);
                worker.Decisions.Clear();
                _counters.InFlight -= worker.InFlight;
            }

            if (targets.Length == 0)
            {
                return false;
            }

            Pump();
            return true;
        }
    }

    /// <summary>
    /// Removes one data-parallel rank of a worker (a worker that now runs fewer), as <see cref="RemoveWorker"/> does a
    /// whole worker. False when unknown.
    /// </summary>
    public bool RemoveTarget(RoutingTarget target)
    {
        lock (_gate)
        {
            Index.RemoveWorker(target);
            if (_workers.Remove(target) is not { } worker)
            {
                return false;
            }

            worker.Removed = true;
            _ledger.Forget(worker, worker.Decisions);
            worker.Decisions.Clear();
            _counters.InFlight -= worker.InFlight;
            Pump();
            return true;
        }
    }

    /// <summary>
    /// Applies a KV event to the index (see <see cref="KvIndex.Apply"/>); a removed block no longer counts as a
    /// remembered prefix of its worker. Events of a worker not added, and every event without KV events
    /// (<see cref="KvRouterOptions.UseKvEvents"/> false), are ignored and reported <see cref="KvApplyResult.Stale"/>. On <see cref="KvApplyResult.Gap"/> the
    /// worker is in <see cref="KvIndex.WorkersNeedingResync"/>: answer with <see cref="LoadDump"/>.
    /// </summary>
    public KvApplyResult ApplyEvent(KvEvent kvEvent)
    {
        ArgumentNullException.ThrowIfNull(kvEvent);
        lock (_gate)
        {
            var target = new RoutingTarget(kvEvent.WorkerId, kvEvent.DpRank);
            if (!Options.UseKvEvents || !_workers.TryGet(target, out KvWorkerState? worker))
            {
                return KvApplyResult.Stale;
            }

            KvApplyResult result = Index.Apply(kvEvent);
            worker.IndexedBlocks = Index.BlockCountOf(target);
            if (result != KvApplyResult.Stale)
            {
                _ledger.Evicted(worker, kvEvent.Data);
            }

            return result;
        }
    }

    /// <summary>Rebuilds a worker's (or one rank's) part of the index from its dump (ignored for a target not added, and without KV events).</summary>
    public void LoadDump(RoutingTarget workerId, KvEventDump dump)
    {
        ArgumentNullException.ThrowIfNull(dump);
        lock (_gate)
        {
            if (Options.UseKvEvents && _workers.TryGet(workerId, out KvWorkerState? worker))
            {
                Index.LoadDump(workerId, dump);
                worker.IndexedBlocks = Index.BlockCountOf(workerId);
                worker.IndexGeneration++;
                worker.Accuracy?.Clear();
            }
        }
    }

    /// <summary>
    /// Takes a worker's own load report (ignored for a worker not added): its KV blocks in use count as its
    /// active blocks when above the router's own count, fading to nothing over
    /// <see cref="KvRouterOptions.StaleMetricsDecay"/> unless a newer report comes. Its pool's free blocks feed the
    /// worker's eviction estimate (<see cref="PoolRetention"/>).
    /// </summary>
    public void UpdateLoad(WorkerLoad load)
    {
        ArgumentNullException.ThrowIfNull(load);
        lock (_gate)
        {
            if (_workers.TryGet(new RoutingTarget(load.WorkerId, load.DpRank), out KvWorkerState? worker))
            {
                worker.ReportedBlocksUsed = load.KvBlocksUsed;
                worker.ReportedBlocksTotal = load.KvBlocksTotal;
                worker.ReportedWaiting = load.Waiting;
                worker.ReportedAt = _time.GetTimestamp();
                worker.HasReport = true;
                worker.Retention.Reported(load.KvBlocksTotal, load.KvBlocksUsed, worker.ReportedAt, _time);
            }
        }
    }

    /// <summary>
    /// As an <see cref="IWorkerRouter"/>: routes among the request's candidates (only those the router knows:
    /// none known is <see cref="RouterRejection.NoWorker"/>). The decision is the lease.
    /// </summary>
    public async ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        int[] tokens = request.TokenIds as int[] ?? [.. request.TokenIds];
        return await RouteAsync(tokens, new RouteOverrides
        {
            RequestId = request.RequestId,
            AllowedWorkers = new HashSet<long>(request.Candidates),
            OverlapScoreWeight = request.OverlapScoreWeight,
            Temperature = request.Temperature,
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Chooses a worker for a prompt of <paramref name="tokens"/> and charges it the request's load. Completes
    /// at once unless every worker is saturated (or others already wait): then the request waits its turn
    /// in the queue. Throws <see cref="RouterRejectedException"/> (in the task) when the queue is full
    /// (<see cref="RouterRejection.QueueFull"/>), there is no worker (<see cref="RouterRejection.NoWorker"/>)
    /// or an override is out of range (<see cref="RouterRejection.InvalidRequest"/>);
    /// <see cref="OperationCanceledException"/> when cancelled while waiting. The caller must complete or
    /// dispose the decision.
    /// </summary>
    public ValueTask<RoutingDecision> RouteAsync(ReadOnlySpan<int> tokens, RouteOverrides? overrides = null, CancellationToken cancellationToken = default)
    {
        double weight = overrides?.OverlapScoreWeight ?? Options.OverlapScoreWeight;
        double temperature = overrides?.Temperature ?? Options.Temperature;
        if (!double.IsFinite(weight) || weight < 0)
        {
            return ValueTask.FromException<RoutingDecision>(new RouterRejectedException(RouterRejection.InvalidRequest,
                $"the overlap score weight must be a finite number, 0 or more (got {weight})", TimeSpan.Zero, "kv_overlap_score_weight"));
        }

        if (!double.IsFinite(temperature) || temperature < 0)
        {
            return ValueTask.FromException<RoutingDecision>(new RouterRejectedException(RouterRejection.InvalidRequest,
                $"the router temperature must be a finite number, 0 or more (got {temperature})", TimeSpan.Zero, "router_temperature"));
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

        var request = new PendingRoute(hashes, blocks, tokens.Length, weight, temperature, overrides?.RequestId, overrides?.AllowedWorkers);
        QueuedRoute queued;
        lock (_gate)
        {
            bool noWorker = !AnyCandidate(request);
            if (noWorker || (_queue.Count >= Options.MaxQueue && (_queue.Count > 0 || !AnyUnsaturated(request))))
            {
                _counters.Rejections++;
                ArrayPool<ulong>.Shared.Return(hashes);
                string why = noWorker ? "no worker is available" : $"every worker is saturated and {_queue.Count} requests already wait";
                Log.Rejected(_logger, request.RequestId, why);
                return ValueTask.FromException<RoutingDecision>(new RouterRejectedException(
                    noWorker ? RouterRejection.NoWorker : RouterRejection.QueueFull, $"the router cannot take the request: {why}", Options.RetryAfter));
            }

            if (_queue.Count == 0 && AnyUnsaturated(request))
            {
                return new ValueTask<RoutingDecision>(Decide(request));
            }

            queued = _queue.Enqueue(request);
            _counters.Queued++;
        }

        if (cancellationToken.CanBeCanceled)
        {
            queued.Registration = cancellationToken.UnsafeRegister(static (state, token) => ((KvRouter)((object[])state!)[0]).Cancel((QueuedRoute)((object[])state)[1], token), new object[] { this, queued });
        }

        ITimer timer = _time.CreateTimer(static state => ((KvRouter)((object[])state!)[0]).TimeOut((QueuedRoute)((object[])state)[1]), new object[] { this, queued }, Options.QueueTimeout, Timeout.InfiniteTimeSpan);
        lock (_gate)
        {
            if (queued.Node?.List is null)
            {
                timer.Dispose(); // already out of the queue
            }
            else
            {
                queued.Timer = timer;
            }
        }

        return new ValueTask<RoutingDecision>(queued.Completion.Task);
    }

    /// <summary>
    /// What the KV index says of a prompt: per worker (or rank) holding its first block, how many leading full
    /// blocks it caches (the router's own view, as its KV events and dumps built it). For diagnostics and tests.
    /// </summary>
    public IReadOnlyDictionary<RoutingTarget, int> IndexedOverlap(ReadOnlySpan<int> tokens)
    {
        ulong[] hashes = BlockHasher.SequenceHashes(tokens, Options.BlockSize);
        var scores = new OverlapScores();
        lock (_gate)
        {
            Index.FindMatches(hashes, scores);
        }

        var overlap = new Dictionary<RoutingTarget, int>();
        for (int i = 0; i < scores.WorkerIds.Length; i++)
        {
            overlap[scores.WorkerIds[i]] = scores.Blocks[i];
        }

        return overlap;
    }

    /// <summary>
    /// Requests waiting for admission at <paramref name="workers"/>, by their own latest load reports (a report
    /// older than <see cref="KvRouterOptions.StaleMetricsDecay"/> counts nothing): a disaggregated router's
    /// prefill queue depth.
    /// </summary>
    public int ReportedWaiting(IReadOnlyList<long> workers)
    {
        ArgumentNullException.ThrowIfNull(workers);
        int waiting = 0;
        lock (_gate)
        {
            long now = _time.GetTimestamp();
            foreach (KvWorkerState w in _workers.Sorted)
            {
                if (w.HasReport && _time.GetElapsedTime(w.ReportedAt, now) < Options.StaleMetricsDecay && workers.Contains(w.WorkerId))
                {
                    waiting += w.ReportedWaiting;
                }
            }
        }

        return waiting;
    }

    /// <summary>A snapshot of the counters and of each worker's load.</summary>
    public RouterStats GetStats()
    {
        lock (_gate)
        {
            long now = _time.GetTimestamp();
            return new RouterStats
            {
                Decisions = _counters.Decisions,
                PromptTokens = _counters.PromptTokens,
                PredictedHitTokens = _counters.PredictedHitTokens,
                ReportedDecisions = _counters.ReportedDecisions,
                ReportedPredictedHitTokens = _counters.ReportedPredictedHitTokens,
                ReportedActualHitTokens = _counters.ReportedActualHitTokens,
                QueueDepth = _queue.Count,
                Queued = _counters.Queued,
                Rejections = _counters.Rejections,
                InFlight = _counters.InFlight,
                AccuracyResyncs = _counters.AccuracyResyncs,
                PeerCharges = _peerChargeCount,
                PeerChargesDropped = _counters.PeerChargesDropped,
                Workers = [.. _workers.Sorted.Select(w => new WorkerLoadSnapshot(
                    w.WorkerId, w.InFlight, w.ActivePrefillTokens, w.DistinctBlocks + w.PartialBlocks, Reported(w, now), w.BatchBudget, Saturated(w), Index.BlockCountOf(w.Target))
                    { DpRank = w.Target.DpRank, Accuracy = w.Accuracy?.Value ?? 1, AccuracyResyncs = w.AccuracyResyncs, PrefixRetention = w.Retention.Retention() })],
            };
        }
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    internal void OnFirstToken(RoutingDecision decision)
    {
        lock (_gate)
        {
            if (decision.State != RoutingDecision.DecisionState.Prefill)
            {
                return;
            }

            decision.State = RoutingDecision.DecisionState.Decoding;
            Published(decision, RouterChargeKind.FirstToken);
            if (!decision.Worker.Removed)
            {
                decision.Worker.ActivePrefillTokens -= decision.ChargedPrefillTokens;
                Pump();
            }
        }
    }

    internal void OnComplete(RoutingDecision decision, int? actualCachedTokens, int? outputTokens = null)
    {
        RoutingTarget? resync = null;
        lock (_gate)
        {
            if (decision.State == RoutingDecision.DecisionState.Completed)
            {
                return;
            }

            Release(decision, completed: actualCachedTokens is not null, actualCachedTokens, outputTokens);
            if (actualCachedTokens is int actual)
            {
                _counters.OnReported(decision.PredictedCachedTokens, actual);
                resync = JudgeAccuracy(decision, actual);
            }

            Retained(decision, actualCachedTokens, outputTokens);

            Pump();
        }

        if (resync is RoutingTarget target)
        {
            ResyncNeeded?.Invoke(target);
        }
    }

    // Under _gate: counts a completed decision against its worker's accuracy; the worker when its index must be resynced.
    private RoutingTarget? JudgeAccuracy(RoutingDecision decision, int actualCachedTokens)
    {
        KvWorkerState worker = decision.Worker;
        if (Options.ResyncAccuracy <= 0 || !Options.UseKvEvents || worker.Removed || decision.IndexGeneration != worker.IndexGeneration)
        {
            // Judged against an index since rebuilt (or gone): says nothing of the current one. Without KV events there
            // is no index to resync: the router's own decisions are its view.
            return null;
        }

        RoutingAccuracy accuracy = worker.Accuracy ??= new RoutingAccuracy(Options.AccuracyWindow);
        // An engine always computes the prompt's last token: a block holding it never counts as found, nor as claimed.
        int cap = Math.Max(0, decision.PromptTokens - 1) / Options.BlockSize;
        accuracy.Add(Math.Min(decision.IndexedOverlapBlocks, cap), Math.Min(decision.OverlapBlocks, cap), Math.Min(actualCachedTokens / Options.BlockSize, cap));
        if (!accuracy.Judgeable || accuracy.Value >= Options.ResyncAccuracy)
        {
            return null;
        }

        Log.Inaccurate(_logger, worker.Target, accuracy.Value, accuracy.Count, accuracy.Wrong, accuracy.AtStake);
        worker.AccuracyResyncs++;
        _counters.AccuracyResyncs++;
        accuracy.Clear();
        worker.IndexGeneration++;
        Index.RequestResync(worker.Target);
        return worker.Target;
    }

    // Under _gate: corrects the decision's worker's new-block rate by its outcome: the prompt blocks it found cached
    // against those charged (predicted overlap blocks - cached tokens / block size), and the blocks its output filled.
    private void Retained(RoutingDecision decision, int? cachedTokens, int? outputTokens)
    {
        PoolRetention retention = decision.Worker.Retention;
        if (cachedTokens is int cached)
        {
            retention.Corrected(decision.OverlapBlocks - (cached / Options.BlockSize));
        }

        if (outputTokens is int output)
        {
            retention.Generated(decision.PromptTokens, output, Options.BlockSize);
        }
    }

    // Under _gate: removes the decision's charge from its worker (a removed worker was already cleared); an own
    // decision's outcome (cached and output tokens, when known) goes with its released event.
    private void Release(RoutingDecision decision, bool completed = false, int? cachedTokens = null, int? outputTokens = null)
    {
        KvWorkerState worker = decision.Worker;
        if (!worker.Removed)
        {
            if (decision.State == RoutingDecision.DecisionState.Prefill)
            {
                worker.ActivePrefillTokens -= decision.ChargedPrefillTokens;
            }

            ReadOnlySpan<ulong> hashes = decision.Hashes.AsSpan(0, decision.HashCount);
            _ledger.Release(worker, hashes);
            if (decision.PromptTokens % Options.BlockSize != 0)
            {
                worker.PartialBlocks--;
            }

            worker.InFlight--;
            _counters.InFlight--;
            worker.Decisions.Remove(decision);
            if (completed && !(Options.UseKvEvents && !hashes.IsEmpty && Index.Holds(worker.Target, hashes[^1])))
            {
                // The prefix is on the worker now; its KV events may not have reached the index yet. When they have (the index
                // holds its last block, so, prefix-closed, all of it), there is nothing to remember: on most completions, since
                // the events of a prompt's blocks leave at its prefill. That keeps long prompts' remembering and expiring off
                // the decisions that follow.
                _ledger.Remember(worker, hashes);
            }
        }

        Published(decision, RouterChargeKind.Released, completed, cachedTokens, outputTokens);
        decision.State = RoutingDecision.DecisionState.Completed;
        ArrayPool<ulong>.Shared.Return(decision.Hashes);
    }

    private void Cancel(QueuedRoute queued, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (!_queue.Remove(queued))
            {
                return;
            }

            ArrayPool<ulong>.Shared.Return(queued.Request.Hashes);
            queued.Completion.TrySetCanceled(cancellationToken);
        }
    }

    private void TimeOut(QueuedRoute queued)
    {
        lock (_gate)
        {
            if (!_queue.Remove(queued))
            {
                return;
            }

            _counters.Rejections++;
            ArrayPool<ulong>.Shared.Return(queued.Request.Hashes);
            string why = $"it waited {Options.QueueTimeout.TotalSeconds:0.###} s for a worker below saturation (--router-queue-timeout)";
            Log.Rejected(_logger, queued.Request.RequestId, why);
            queued.Completion.TrySetException(new RouterRejectedException(RouterRejection.QueueTimeout, $"the router cannot take the request: {why}", Options.RetryAfter));
        }
    }

    // Under _gate: hands queued requests to workers while one has room, first come first served.
    private void Pump()
    {
        while (_queue.First is { } queued)
        {
            if (!AnyCandidate(queued.Request))
            {
                _queue.Dequeue();
                _counters.Rejections++;
                ArrayPool<ulong>.Shared.Return(queued.Request.Hashes);
                queued.Completion.TrySetException(new RouterRejectedException(RouterRejection.NoWorker, "the router cannot take the request: no worker is available", Options.RetryAfter));
                continue;
            }

            if (!AnyUnsaturated(queued.Request))
            {
                return;
            }

            _queue.Dequeue();
            RoutingDecision decision = Decide(queued.Request);
            if (!queued.Completion.TrySetResult(decision))
            {
                Release(decision);
            }
        }
    }

    // A loop, not LINQ: no closure on the decision path.
    private bool AnyCandidate(in PendingRoute request)
    {
        foreach (KvWorkerState w in _workers.Sorted)
        {
            if (request.Allows(w))
            {
                return true;
            }
        }

        return false;
    }

    private bool Saturated(KvWorkerState worker) => worker.ActivePrefillTokens > Options.Saturation * worker.BatchBudget;

    private bool AnyUnsaturated(in PendingRoute request)
    {
        foreach (KvWorkerState w in _workers.Sorted)
        {
            if (!Saturated(w) && request.Allows(w))
            {
                return true;
            }
        }

        return false;
    }

    private double Reported(KvWorkerState worker, long now)
    {
        if (!worker.HasReport)
        {
            return 0;
        }

        double fade = 1 - (_time.GetElapsedTime(worker.ReportedAt, now) / Options.StaleMetricsDecay);
        return fade <= 0 ? 0 : worker.ReportedBlocksUsed * Math.Min(fade, 1);
    }

    // Under _gate, with at least one unsaturated worker: the cost of every worker, the choice, the charge.
    private RoutingDecision Decide(in PendingRoute request)
    {
        int bs = Options.BlockSize;
        ReadOnlySpan<ulong> hashes = request.Hashes.AsSpan(0, request.Blocks);
        KvWorkerState[] list = _workers.Sorted;
        foreach (KvWorkerState w in list)
        {
            w.IndexedOverlap = 0;
            w.InflightOverlap = 0;
            w.RecentOverlap = 0;
        }

        _ledger.Match(hashes, _workers);
        Index.FindMatches(hashes, _scores);
        ReadOnlySpan<RoutingTarget> ids = _scores.WorkerIds;
        ReadOnlySpan<int> depths = _scores.Blocks;
        for (int i = 0; i < ids.Length; i++)
        {
            if (_workers.TryGet(ids[i], out KvWorkerState? w))
            {
                w.IndexedOverlap = depths[i];
            }
        }

        if (_costs.Length < list.Length)
        {
            _costs = new double[list.Length * 2];
        }

        // The prefix most candidates hold counts as held by all (KvCost.CommonOverlap): from the histogram of their overlaps.
        if (_overlapCounts.Length <= request.Blocks)
        {
            _overlapCounts = new int[(request.Blocks + 1) * 2];
        }

        Span<int> histogram = _overlapCounts.AsSpan(0, request.Blocks + 1);
        histogram.Clear();
        int candidates = 0;
        foreach (KvWorkerState w in list)
        {
            if (!Saturated(w) && request.Allows(w))
            {
                candidates++;
                histogram[Math.Min(Overlap(w), request.Blocks)]++;
            }
        }

        int common = KvCost.CommonOverlap(histogram, candidates);
        long now = _time.GetTimestamp();
        double min = double.PositiveInfinity, max = double.NegativeInfinity;
        for (int i = 0; i < list.Length; i++)
        {
            KvWorkerState w = list[i];
            if (Saturated(w) || !request.Allows(w))
            {
                _costs[i] = double.NaN;
                continue;
            }

            double cost = KvCost.Of(new KvCostInput(
                request.PromptTokens, bs, Overlap(w), w.InflightOverlap, w.ActivePrefillTokens, w.DistinctBlocks + w.PartialBlocks,
                Reported(w, now), Options.UseKvEvents ? w.IndexedBlocks : (int)w.RememberedBlocks, w.ReportedBlocksTotal, request.Weight)
            {
                CommonOverlapBlocks = common,
            });
            _costs[i] = cost;
            min = Math.Min(min, cost);
            max = Math.Max(max, cost);
        }

        int chosen = request.Temperature > 0 ? Sample(list.Length, min, max, request.Temperature) : Lowest(list.Length, min);
        KvWorkerState worker = list[chosen];
        int chosenOverlap = Overlap(worker);
        long charged = request.PromptTokens - ((long)chosenOverlap * bs);
        Charge(worker, hashes, request.PromptTokens, charged);
        var decision = new RoutingDecision(this, worker, request.PromptTokens, chosenOverlap, worker.IndexedOverlap, _costs[chosen], request.Hashes, request.Blocks, charged, bs)
        {
            IndexGeneration = worker.IndexGeneration,
        };
        worker.Decisions.Add(decision);
        if (_chargeObserver is not null)
        {
            decision.ChargeId = ++_nextChargeId;
            Published(decision, RouterChargeKind.Charged);
        }

        _counters.OnDecision(decision);
        Log.Routed(_logger, request.RequestId, worker.Target, chosenOverlap, worker.IndexedOverlap, decision.Cost, request.PromptTokens);
        return decision;
    }

    private int Overlap(KvWorkerState w) => Options.CountInflightPrefixes ? Math.Max(w.IndexedOverlap, Math.Max(w.InflightOverlap, w.RecentOverlap)) : w.IndexedOverlap;

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

    private static partial class Log
    {
        [LoggerMessage(EventId = 6101, Level = LogLevel.Debug, Message = "Routed request {RequestId} to worker {WorkerId}: overlap {OverlapBlocks} blocks ({IndexedBlocks} indexed), cost {Cost}, {PromptTokens} prompt tokens")]
        public static partial void Routed(ILogger logger, string? requestId, RoutingTarget workerId, int overlapBlocks, int indexedBlocks, double cost, int promptTokens);

        [LoggerMessage(EventId = 6102, Level = LogLevel.Debug, Message = "Rejected request {RequestId}: {Reason}")]
        public static partial void Rejected(ILogger logger, string? requestId, string reason);

        [LoggerMessage(EventId = 6103, Level = LogLevel.Warning, Message = "Routing accuracy on worker {WorkerId} fell to {Accuracy:P0} over its last {Requests} requests ({Wrong} of {AtStake} prompt blocks predicted wrong: its KV events are lost, late or out of step with its cache); resyncing its index from its dump")]
        public static partial void Inaccurate(ILogger logger, RoutingTarget workerId, double accuracy, int requests, long wrong, long atStake);
    }
}

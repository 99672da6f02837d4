using System.Diagnostics;
using System.Threading.Channels;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Load.Workloads;
using Dynamo.Mocker;

namespace Dynamo.Load.Simulation;

/// <summary>
/// One router mode over one workload, in virtual time: the real router (<see cref="KvRouter"/>, or the round-robin and
/// random routers) in front of N mocker engines run step by step (<see cref="MockerEngine.PlanStep"/>: the real scheduler
/// and block pool, the mocker's cost model for each step's duration), every event on one <see cref="VirtualClock"/>.
/// The workers' KV events reach the router through the event type it consumes from the event plane
/// (<see cref="KvRouter.ApplyEvent"/>), at once or after <see cref="SimulationOptions.KvEventDelay"/>; their load reports
/// (<see cref="KvRouter.UpdateLoad"/>) every <see cref="SimulationOptions.LoadReportInterval"/>. Clients behave as bench
/// serve's runner: at most <c>concurrency</c> conversations at once, taken in order, each starting at its arrival
/// (or when a client is free) and sending its next turn as soon as the last one's answer ended, with that answer and
/// the earlier turns in its prompt. Single-threaded and deterministic: nothing waits, no thread pool is involved, and
/// the same inputs give the same figures. The only real time measured is the router's own decision time. With prefill
/// workers (<see cref="SimulationOptions.PrefillWorkers"/>), the real disaggregation decision sits behind the decode
/// router (Simulator.Disaggregation.cs).
/// </summary>
internal sealed partial class Simulator
{
    private readonly SimulationOptions _options;
    private readonly string _mode;
    private readonly IReadOnlyList<LoadConversation> _conversations;
    private readonly int _concurrency;
    private readonly VirtualClock _clock = new();
    private readonly Worker[] _workers;
    private readonly Dictionary<long, Worker> _byId = [];
    private readonly long[] _candidates;
    private readonly IWorkerRouter _router;
    private readonly KvRouter? _kv;
    private readonly KvRouter[] _replicas = [];
    private int _nextReplica;
    private readonly Queue<Pending> _pending = new();
    private readonly SimulationRecorder _recorder;
    private readonly FollowUpTracker _followUps;
    private readonly Disaggregation? _disaggregation;
    private int _nextConversation;
    private long _requestIds;

    private Simulator(SimulationOptions options, string mode, IReadOnlyList<LoadConversation> conversations, int concurrency)
    {
        _options = options;
        _mode = mode;
        _conversations = conversations;
        _concurrency = concurrency;
        _workers = new Worker[options.Workers];
        _candidates = new long[options.Workers];
        _recorder = new SimulationRecorder(options.Workers);
        _followUps = new FollowUpTracker(options.Mocker.BlockSize);
        (_router, _kv) = CreateRouter(options.KvRouter, options.Seed);
        if (_kv is not null)
        {
            _replicas = [_kv, .. Enumerable.Range(1, options.RouterReplicas - 1).Select(r => new KvRouter(_kv.Options with { Seed = _kv.Options.Seed + r }, _clock))];
            foreach (KvRouter replica in _replicas.Skip(1))
            {
                replica.ResyncNeeded += target => OnResyncNeeded(replica, target);
            }
            ShareCharges();
        }

        for (int i = 0; i < _workers.Length; i++)
        {
            _workers[i] = AddWorker(i, i + 1, _kv);
            _candidates[i] = i + 1;
        }

        if (options.PrefillWorkers > 0)
        {
            _disaggregation = new Disaggregation(this);
        }
    }

    /// <summary>
    /// The router of <see cref="_mode"/> over one pool of workers (the KV router, when it is one, too; a random router's
    /// seed is <paramref name="seed"/>).
    /// </summary>
    private (IWorkerRouter Router, KvRouter? Kv) CreateRouter(KvRouterOptions kvOptions, int seed)
    {
        if (_mode == RouterModes.Kv)
        {
            var kv = new KvRouter(kvOptions with { Seed = kvOptions.Seed ?? seed, BlockSize = _options.Mocker.BlockSize }, _clock);
            kv.ResyncNeeded += target => OnResyncNeeded(kv, target);
            return (kv, kv);
        }

        return _mode switch
        {
            RouterModes.RoundRobin => (new RoundRobinWorkerRouter(), null),
            RouterModes.Random => (new RandomWorkerRouter(new Random(seed)), null),
            _ => throw new ArgumentException($"--router-modes: '{_mode}' is not kv, round-robin or random"),
        };
    }

    /// <summary>A mocker worker of id <paramref name="id"/>, known to <paramref name="kv"/> (its pool's KV router, if any), its KV events to it.</summary>
    private Worker AddWorker(int index, long id, KvRouter? kv, bool prefill = false)
    {
        var worker = new Worker(index, id, MockerEngine.Driven(_options.Mocker with { WorkerId = id, Seed = (ulong)_options.Seed }), kv) { Prefill = prefill };
        _byId[id] = worker;
        foreach (KvRouter router in RoutersOf(kv))
        {
            router.AddWorker(id, _options.Mocker.MaxNumBatchedTokens);
        }

        worker.Engine.KvEvents!.Published += e => OnKvEvent(worker.Kv, e);
        return worker;
    }

    /// <summary>Runs <paramref name="conversations"/> through <paramref name="mode"/>'s router to the end and returns the figures.</summary>
    public static async Task<SimulationModeResult> RunAsync(SimulationOptions options, string mode, IReadOnlyList<LoadConversation> conversations, int concurrency)
    {
        var simulator = new Simulator(options.Validate(), mode, conversations, Math.Max(1, concurrency));
        try
        {
            return simulator.Run();
        }
        finally
        {
            foreach (Worker w in simulator._byId.Values)
            {
                await w.Engine.DisposeAsync().ConfigureAwait(false);
            }

            await simulator._router.DisposeAsync().ConfigureAwait(false);
            if (simulator._disaggregation is { } d)
            {
                await d.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private SimulationModeResult Run()
    {
        long wallStart = Stopwatch.GetTimestamp();
        for (int i = 0; i < _concurrency && _nextConversation < _conversations.Count; i++)
        {
            StartNextConversation();
        }

        while (_clock.RunNext())
        {
            // Load released or a queue timeout fired: the router answered queued requests, first come first served.
            while (_pending.TryPeek(out Pending p) && p.Decision.IsCompleted)
            {
                _pending.Dequeue();
                Routed(p.Request, Take(new ValueTask<RoutingDecision>(p.Decision)));
            }
        }

        if (_pending.Count > 0)
        {
            throw new InvalidOperationException($"the simulation ended with {_pending.Count} requests still queued in the router");
        }

        return _recorder.Result(ModeName(), _byId.Values.Select(w => w.Engine.Stats).ToArray(), _clock.Now, Stopwatch.GetElapsedTime(wallStart), _clock.EventsRun) with
        {
            AccuracyResyncs = _replicas.Concat(_disaggregation?.PrefillKv is { } pk ? [pk] : []).Sum(r => r.GetStats().AccuracyResyncs),
            KvEventsLost = _byId.Values.Sum(w => w.Engine.KvEvents?.Lost ?? 0),
            PrefillWorkers = _options.PrefillWorkers,
            Disaggregation = _disaggregation?.Result(),
            FollowUps = _followUps.Summary(),
        };
    }

    /// <summary>The mode as the tables name it: the KV router without KV events says so, with its fixed TTL if it has one.</summary>
    private string ModeName() => _kv?.Options is { UseKvEvents: false } o
        ? $"{_mode} --no-kv-events{(o.PrefixTtl is { } ttl ? $" --router-prefix-ttl {ttl.TotalSeconds:0.###}" : "")}"
        : _mode;

    private void StartNextConversation()
    {
        if (_nextConversation >= _conversations.Count)
        {
            return;
        }

        LoadConversation conversation = _conversations[_nextConversation++];
        var state = new Conversation(conversation);
        _clock.At(conversation.Arrival, () => SendTurn(state));
    }

    /// <summary>The next turn of a conversation: its prompt (system, earlier turns and answers, the new message), routed and sent.</summary>
    private void SendTurn(Conversation conversation)
    {
        LoadTurn turn = conversation.Source.Turns[conversation.Turn];
        int[] prompt = conversation.Prompt(turn);
        var request = new Request(conversation, prompt, turn.MaxTokens, "sim-" + _requestIds++, _clock.Now);
        _recorder.Sent();
        int collections = GC.CollectionCount(0);
        long waited = RunQueueWait.Nanoseconds();
        long start = Stopwatch.GetTimestamp();
        WorkerLease? lease;
        if (_kv is not null)
        {
            // The span overload: the IWorkerRouter wrapper copies the candidates into a set (every worker, every request:
            // O(workers)) and awaits, so a decision that waited in the queue would complete on the thread pool; this
            // task completes on this thread, inside the event that releases load or times the request out.
            KvRouter replica = _replicas[_nextReplica++ % _replicas.Length];
            ValueTask<RoutingDecision> decision = replica.RouteAsync(request.Prompt, new RouteOverrides { RequestId = request.Id });
            _recorder.Decided(Stopwatch.GetTimestamp() - start, GC.CollectionCount(0) != collections || RunQueueWait.Nanoseconds() != waited);
            if (!decision.IsCompleted)
            {
                _pending.Enqueue(new Pending(request, decision.AsTask()));
                return;
            }

            lease = Take(decision);
        }
        else
        {
            lease = Take(_router.RouteAsync(new WorkerRouteRequest { RequestId = request.Id, TokenIds = request.Prompt, Candidates = _candidates }));
            _recorder.Decided(Stopwatch.GetTimestamp() - start, GC.CollectionCount(0) != collections || RunQueueWait.Nanoseconds() != waited);
        }

        Routed(request, lease);
    }

    /// <summary>The lease of a completed decision; null when the router rejected the request.</summary>
    private static WorkerLease? Take<T>(ValueTask<T> decision)
        where T : WorkerLease
    {
        try
        {
            return decision.GetAwaiter().GetResult();
        }
        catch (RouterRejectedException)
        {
            return null;
        }
    }

    /// <summary>Disposes a lease: the routers here release synchronously (a lease that would wait is a bug in virtual time).</summary>
    private static void Release(WorkerLease lease)
    {
        ValueTask disposed = lease.DisposeAsync();
        if (!disposed.IsCompleted)
        {
            throw new InvalidOperationException($"the lease on worker {lease.WorkerId} did not release synchronously");
        }

        disposed.GetAwaiter().GetResult();
    }

    /// <summary>Sends a routed request to its worker (a rejected one, <paramref name="lease"/> null, ends its turn).</summary>
    private void Routed(Request request, WorkerLease? lease)
    {
        if (lease is null)
        {
            _recorder.Rejected();
            TurnEnded(request.Conversation, answer: null);
            return;
        }

        Worker worker = _byId[lease.WorkerId];
        var engineRequest = new EngineRequest(request.Id, request.Prompt, SamplingParams.Default with { MaxTokens = request.MaxTokens, IgnoreEos = true });
        PrefillLeg? leg = null;
        if (_disaggregation is { } disaggregation)
        {
            (lease, engineRequest, leg) = disaggregation.Decide(request, lease, engineRequest);
        }

        ChannelReader<EngineOutput> outputs;
        try
        {
            outputs = worker.Engine.SubmitPolled(engineRequest);
        }
        catch (ArgumentException)
        {
            // A prompt the worker can never serve (longer than its context or pool): a 400 in the real system.
            Release(lease);
            _recorder.Rejected();
            TurnEnded(request.Conversation, answer: null);
            return;
        }

        _recorder.Dispatched(worker.Index, request.Prompt.Length);
        FollowUpTracker.Turn turn = _followUps.Dispatched(request.Prompt, worker.Id, _clock.Now);
        worker.Active.Add(new InFlight(request, lease, outputs, request.Conversation.Source.Turns.Count > 1) { Leg = leg, Turn = turn });
        if (leg is not null)
        {
            worker.Legs.Add(leg);
        }

        if (!worker.Busy)
        {
            Plan(worker);
        }
    }

    /// <summary>Plans the worker's next step and schedules its end; an idle worker reports its load and waits for a request.</summary>
    private void Plan(Worker worker)
    {
        TimeSpan? time = worker.Engine.PlanStep();
        worker.Busy = time is not null;
        if (worker.Legs.Count > 0)
        {
            _disaggregation!.StartReserved(worker);
        }

        if (worker.Engine.PlannedNothing && worker.Engine.Stats is { RunningRequests: 0, AwaitingKvRequests: 0 } stuck)
        {
            // A step that fits nothing with nothing running and no KV to come: no later step can differ.
            throw new SimulationStalledException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"worker {worker.Id} stalled at {_clock.Now.TotalSeconds:F1} s of virtual time: {stuck.WaitingRequests} requests wait, none runs, and the first cannot get KV blocks ({stuck.KvBlocksUsed} of {stuck.KvBlocksTotal} held by requests queued behind it with imported KV)"));
        }

        if (time is { } t)
        {
            _clock.After(t, () => StepEnded(worker));
        }
        else
        {
            ReportLoad(worker, force: true);
        }
    }

    private void StepEnded(Worker worker)
    {
        worker.Engine.RunPlannedStep();
        List<InFlight> active = worker.Active;
        for (int i = 0; i < active.Count; i++)
        {
            InFlight f = active[i];
            while (f.Outputs.TryRead(out EngineOutput? output))
            {
                if (Token(f, output))
                {
                    active[i] = active[^1];
                    active.RemoveAt(active.Count - 1);
                    i--;
                    break;
                }

            }
        }

        ReportLoad(worker, force: false);
        Plan(worker);
    }

    /// <summary>Takes one output of a request; true when it was the last (the lease is then completed and released).</summary>
    private bool Token(InFlight f, EngineOutput output)
    {
        if (f.PrefillFor is { } prefilled)
        {
            return _disaggregation!.PrefillOutput(prefilled, output);
        }

        TimeSpan now = _clock.Now;
        foreach (int token in output.TokenIds)
        {
            f.Answer?.Add(token);
            if (f.Tokens++ == 0)
            {
                _recorder.FirstToken(now - f.Request.Sent);
                f.Lease!.MarkFirstToken();
            }
            else
            {
                _recorder.Gap(now - f.LastToken);
            }

            f.LastToken = now;
        }

        if (output.FinishReason is null)
        {
            return false;
        }

        if (_kv is not null)
        {
            _recorder.Predicted(f.Lease!.PredictedCachedTokens, output.CachedTokens);
        }

        f.Lease!.Complete(output.CachedTokens, f.Tokens);
        Release(f.Lease);
        if (f.Leg is { } leg)
        {
            _disaggregation!.Ended(leg);
        }

        _recorder.Completed(f.Tokens, now - f.Request.Sent, now);
        if (f.Turn is { } turn)
        {
            turn.Ended = now;
        }

        TurnEnded(f.Request.Conversation, f.Answer ?? []);
        return true;
    }

    /// <summary>A turn ended (answered, or failed: then its message is not carried on): the next turn goes at once, else the client takes the next conversation.</summary>
    private void TurnEnded(Conversation conversation, List<int>? answer)
    {
        if (answer is not null)
        {
            conversation.Answered(answer);
        }

        conversation.Turn++;
        if (conversation.Turn < conversation.Source.Turns.Count)
        {
            _clock.After(TimeSpan.Zero, () => SendTurn(conversation));
        }
        else
        {
            StartNextConversation();
        }
    }

    /// <summary>A worker's KV event, to its pool's KV router (<paramref name="kv"/>; none: counted only).</summary>
    private void OnKvEvent(KvRouter? kv, KvEvent kvEvent)
    {
        _recorder.KvEvent();
        _followUps.Observe(kvEvent.WorkerId, kvEvent);
        if (kv is null || !kv.Options.UseKvEvents)
        {
            return;
        }

        foreach (KvRouter router in RoutersOf(kv))
        {
            if (_options.KvEventDelay == TimeSpan.Zero)
            {
                router.ApplyEvent(kvEvent);
            }
            else
            {
                _clock.After(_options.KvEventDelay, () => router.ApplyEvent(kvEvent));
            }
        }
    }

    /// <summary>
    /// A KV router's accuracy check asked for <paramref name="target"/>'s dump: as KvRouterService fetches it, it arrives
    /// after the KV event delay (a request-plane round trip), taken from the worker's pool when it is served.
    /// </summary>
    private void OnResyncNeeded(KvRouter router, RoutingTarget target) =>
        _clock.After(_options.KvEventDelay, () => router.LoadDump(target, _byId[target.WorkerId].Engine.DumpBetweenSteps()));

    /// <summary>A pool's KV routers: the decode pool's replicas, or the one router of another pool (the prefill pool).</summary>
    private KvRouter[] RoutersOf(KvRouter? kv) => kv is null ? [] : kv == _kv ? _replicas : [kv];

    /// <summary>A worker's load report, every <see cref="SimulationOptions.LoadReportInterval"/> (or <paramref name="force"/>d), to its pool's KV router.</summary>
    private void ReportLoad(Worker worker, bool force)
    {
        if ((worker.Kv is null && !worker.Prefill) || (!force && worker.LastReport is { } last && _clock.Now - last < _options.LoadReportInterval))
        {
            return;
        }

        worker.LastReport = _clock.Now;
        EngineStats stats = worker.Engine.Stats;
        worker.ReportedWaiting = stats.WaitingRequests;
        var load = new WorkerLoad
        {
            WorkerId = worker.Id,
            Running = stats.RunningRequests,
            Waiting = stats.WaitingRequests,
            KvBlocksUsed = stats.KvBlocksUsed,
            KvBlocksTotal = stats.KvBlocksTotal,
        };
        foreach (KvRouter router in RoutersOf(worker.Kv))
        {
            router.UpdateLoad(load);
        }
    }

    /// <summary>With several replicas: each one's charges reach every other after <see cref="SimulationOptions.ReplicaSyncDelay"/> (Routing/README.md, "Router replicas").</summary>
    private void ShareCharges()
    {
        if (_replicas.Length < 2)
        {
            return;
        }

        for (int r = 0; r < _replicas.Length; r++)
        {
            KvRouter[] others = [.. _replicas.Where((_, i) => i != r)];
            _replicas[r].ObserveCharges(r + 1, charge => _clock.After(_options.ReplicaSyncDelay, () =>
            {
                foreach (KvRouter other in others)
                {
                    other.ApplyPeerCharge(charge);
                }
            }));
        }
    }

    /// <summary>A worker: its index in its pool, its engine, its pool's KV router (if the mode is kv), its requests in flight.</summary>
    private sealed class Worker(int index, long id, MockerEngine engine, KvRouter? kv)
    {
        public int Index { get; } = index;

        public long Id { get; } = id;

        public MockerEngine Engine { get; } = engine;

        public KvRouter? Kv { get; } = kv;

        /// <summary>A prefill worker (its load reports are the prefill queue the disaggregation rule reads).</summary>
        public bool Prefill { get; init; }

        public List<InFlight> Active { get; } = [];

        /// <summary>Remote prefills of this decode worker's requests whose blocks are not yet reserved (their prefill not yet asked for).</summary>
        public List<PrefillLeg> Legs { get; } = [];

        /// <summary>Requests waiting at this worker by its last load report.</summary>
        public int ReportedWaiting { get; set; }

        public bool Busy { get; set; }

        public TimeSpan? LastReport { get; set; }
    }

    /// <summary>A conversation in progress: the prompt so far (system, earlier successful turns and their answers) and the next turn.</summary>
    private sealed class Conversation(LoadConversation source)
    {
        private List<int>? _history;
        private int[] _message = [];

        public LoadConversation Source { get; } = source;

        public int Turn { get; set; }

        /// <summary>The prompt of <paramref name="turn"/>: the history, then the turn's message (token ids, or its words as tokens).</summary>
        public int[] Prompt(LoadTurn turn)
        {
            _message = turn.PromptTokenIds as int[] ?? [.. turn.PromptTokenIds ?? SyntheticText.Tokens(turn.User)];
            _history ??= Source.System is { } system ? [.. SyntheticText.Tokens(system)] : [];
            if (_history.Count == 0)
            {
                return _message;
            }

            int[] prompt = new int[_history.Count + _message.Length];
            _history.CopyTo(prompt);
            _message.CopyTo(prompt, _history.Count);
            return prompt;
        }

        /// <summary>The last turn was answered: its message and answer join the history of the next turns.</summary>
        public void Answered(List<int> answer)
        {
            if (Turn + 1 < Source.Turns.Count)
            {
                _history!.AddRange(_message);
                _history.AddRange(answer);
            }
        }
    }

    private sealed record Request(Conversation Conversation, int[] Prompt, int MaxTokens, string Id, TimeSpan Sent);

    /// <summary>A request on a worker: a client's (with its lease), or a remote prefill's on a prefill worker (<see cref="PrefillFor"/>).</summary>
    private sealed class InFlight(Request request, WorkerLease? lease, ChannelReader<EngineOutput> outputs, bool keepAnswer)
    {
        public Request Request { get; } = request;

        public WorkerLease? Lease { get; } = lease;

        /// <summary>The client request's remote prefill, on its decode worker.</summary>
        public PrefillLeg? Leg { get; init; }

        /// <summary>The client request as the follow-up figures track it.</summary>
        public FollowUpTracker.Turn? Turn { get; init; }

        /// <summary>On a prefill worker: the remote prefill this request computes.</summary>
        public PrefillLeg? PrefillFor { get; init; }

        public ChannelReader<EngineOutput> Outputs { get; } = outputs;

        /// <summary>The generated tokens, kept only when a later turn carries them.</summary>
        public List<int>? Answer { get; } = keepAnswer ? [] : null;

        public int Tokens { get; set; }

        public TimeSpan LastToken { get; set; }
    }

    private readonly record struct Pending(Request Request, Task<RoutingDecision> Decision);
}

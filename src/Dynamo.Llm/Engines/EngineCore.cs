using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Llm.Engines;

/// <summary>
/// The request bookkeeping of an engine that runs a <see cref="Scheduler"/> over a <see cref="KvBlockPool"/>:
/// submit-time checks and their messages, the live requests, the command queue (submit, cancel, inspect),
/// one output channel per request, cancellation by token, by <see cref="Cancel"/> or by abandoning the
/// enumeration, the end of a request (finish reasons, stop token ids, max tokens), failures, the stats
/// snapshot, KV dumps and the bookkeeping of KV import (with the request, or deferred: <see cref="DeferredKvImport"/>)
/// and export. The built-in engine, the mocker and the
/// echo engine each own one and keep only their loop and their step: what runs between
/// <see cref="NextStep"/> and <see cref="Emit"/>.
/// <para>
/// Threads: <see cref="Submit"/>, <see cref="Cancel"/>, <see cref="InspectAsync{T}"/>, <see cref="DumpKvAsync"/>,
/// <see cref="Stats"/> and <see cref="StopAsync"/> are for any thread; everything else belongs to the engine's
/// loop, which alone touches the scheduler and the pool (commands reach it through the queue, so a submit or
/// a cancel never waits for a step).
/// </para>
/// <para>
/// Composition rather than an abstract base engine: the loops differ in kind (a dedicated thread that blocks
/// between steps, async loops paced by a clock), so a base class would either fix one shape or scatter the
/// loop into protected hooks; as an object the core is a set of plain calls each loop makes, the engine's
/// public surface stays its own, and the per-request state is a type parameter rather than a downcast.
/// </para>
/// </summary>
/// <typeparam name="TState">What the engine keeps per request, made by the factory given at construction.</typeparam>
internal sealed class EngineCore<TState>
{
    private readonly IEngine _owner;
    private readonly EngineCoreOptions _options;
    private readonly Func<EngineRequest, TState> _newState;
    private readonly IKvTransferStore? _kvStore;
    private readonly Scheduler _scheduler;
    private readonly KvBlockPool _pool;
    private readonly KvEventLog? _events;
    private readonly CommandQueue<Command> _commands = new();
    private readonly ConcurrentDictionary<string, LiveRequest<TState>> _live = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private volatile EngineStats _stats;
    private volatile Exception? _fault;
    private long _promptTokens;
    private long _generatedTokens;
    private long _finished;
    private long _steps;
    private long _importsRefused;
    private double _stepMs;
    private int _stopped;

    /// <summary>1 once <see cref="FailAll"/> began: a submit racing with it must not leave a stream that never ends.</summary>
    private int _closed;

    /// <param name="owner">The engine (named by <see cref="ObjectDisposedException"/>s and failure messages).</param>
    /// <param name="options">Pool, limits and names.</param>
    /// <param name="newState">Makes the engine's state of a request that passed the submit checks.</param>
    /// <param name="kvStore">Where transferred KV is read and written; null: imports are refused and nothing is exported.</param>
    public EngineCore(IEngine owner, EngineCoreOptions options, Func<EngineRequest, TState> newState, IKvTransferStore? kvStore)
    {
        _owner = owner;
        _options = options;
        _newState = newState;
        _kvStore = kvStore;
        _events = options.PrefixCaching ? new KvEventLog(options.WorkerId, options.EventHistory, options.KvEventLoss, options.KvEventLossSeed) : null;
        _pool = new KvBlockPool(options.BlockCount, options.BlockSize, _events, options.PrefixCaching);
        _scheduler = new Scheduler(options.Scheduler, _pool, options.StepCostSeed is { } seed ? new StepCostModel(seed) : null);
        MaxSequenceLength = (int)Math.Min(options.ContextLength, (long)options.BlockCount * options.BlockSize);
        _stats = Snapshot();
    }

    public int BlockSize => _options.BlockSize;

    public int ContextLength => _options.ContextLength;

    /// <summary>Tokens one sequence may reach: the context length, or the whole KV pool if that is smaller.</summary>
    public int MaxSequenceLength { get; }

    /// <summary>The scheduler (engine loop only).</summary>
    public Scheduler Scheduler => _scheduler;

    public KvEventLog? KvEvents => _events;

    /// <summary>The latest snapshot, taken by the loop after each step and when it goes idle.</summary>
    public EngineStats Stats => _stats;

    /// <summary>The error of the last step that failed (its requests' streams ended with it).</summary>
    public Exception? Fault => _fault;

    /// <summary>Cancelled when the engine stops (<see cref="StopAsync"/>): the loop ends, then calls <see cref="FailAll"/>.</summary>
    public CancellationToken Stopping => _stop.Token;

    /// <summary>Called on the engine loop with the step number, after a step is planned and before it runs (tests pace engines with it).</summary>
    public Action<long>? BeforeStep { get; set; }

    /// <summary>
    /// Checks a request, queues it and returns its output stream. A request the engine can never serve throws
    /// <see cref="ArgumentException"/> here (see <see cref="IEngine.SubmitAsync"/>); a stopped engine throws
    /// <see cref="ObjectDisposedException"/>.
    /// </summary>
    public IAsyncEnumerable<EngineOutput> Submit(EngineRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return ReadAsync(Claim(request), cancellationToken);
    }

    /// <summary>
    /// Checks and queues a request as <see cref="Submit"/> does, for a caller that runs the engine's loop itself on
    /// one thread (a virtual-time simulation): it reads the outputs with <see cref="ChannelReader{T}.TryRead"/> after
    /// each step, so nothing ever waits on the channel. No cancellation by token or by an abandoned enumeration. A deferred
    /// KV import is taken as <see cref="Submit"/> takes it (the caller polls its tasks rather than awaiting them).
    /// </summary>
    public ChannelReader<EngineOutput> SubmitPolled(EngineRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        return Claim(request).Outputs.Reader;
    }

    /// <summary>Claims the request's deferred KV import (one request each), then <see cref="Accept"/>; a rejection ends the import.</summary>
    private LiveRequest<TState> Claim(EngineRequest request)
    {
        DeferredKvImport? deferred = request.DeferredKv;
        if (deferred is not null && !deferred.TryClaim())
        {
            throw new ArgumentException("the deferred KV import was already submitted with another request (one per request)");
        }

        try
        {
            return Accept(request);
        }
        catch (Exception e) when (deferred is not null)
        {
            // Rejected: whoever awaits the import's tasks learns it here.
            deferred.End(KvImportStatus.Cancelled, $"the request was not accepted: {e.Message}");
            throw;
        }
    }

    /// <summary>Checks a request, makes it live and queues it (see <see cref="Submit"/>).</summary>
    private LiveRequest<TState> Accept(EngineRequest request)
    {
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, _owner);
        Check(request);
        var sequence = new SequenceState(request.Id, request.PromptTokens, MaxSequenceLength, request.Sampling.MaxTokens);
        var live = new LiveRequest<TState>(request, sequence, _newState(request));
        sequence.Tag = live;
        if (!_live.TryAdd(request.Id, live))
        {
            throw new ArgumentException($"a request with id '{request.Id}' is already running");
        }

        // Stopped meanwhile: FailAll either saw this request (and ends its stream) or it is removed here.
        if (Volatile.Read(ref _closed) != 0 && _live.TryRemove(new KeyValuePair<string, LiveRequest<TState>>(request.Id, live)))
        {
            throw new ObjectDisposedException(_owner.GetType().Name, "the engine stopped");
        }

        // Before the submit is queued, so the loop, which looks for an arrival when it reserves, misses none.
        request.DeferredKv?.Attach(() => _commands.Enqueue(new Command(null, null, KvArrived: live)));
        _commands.Enqueue(new Command(live, null));
        return live;
    }

    private void Check(EngineRequest request)
    {
        request.Sampling.Validate();
        IReadOnlyList<int> prompt = request.PromptTokens;
        if (string.IsNullOrEmpty(request.Id))
        {
            throw new ArgumentException("the request has no id");
        }

        if (prompt.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens");
        }

        if (request.Kv is not null && request.DeferredKv is not null)
        {
            throw new ArgumentException("the request has both Kv and DeferredKv (at most one)");
        }

        if (request.ResumedOutputTokens < 0 || request.ResumedOutputTokens >= prompt.Count)
        {
            throw new ArgumentException($"resumed_output_tokens: {request.ResumedOutputTokens} must be at least 0 and less than the {prompt.Count} tokens of the prompt");
        }

        if (prompt.Count >= ContextLength)
        {
            throw new ArgumentException($"the prompt has {prompt.Count} tokens, but the context length is {ContextLength} (at least one token must be left to generate)");
        }

        if (prompt.Count >= MaxSequenceLength)
        {
            throw new ArgumentException($"the prompt has {prompt.Count} tokens, but the whole KV cache holds {MaxSequenceLength} ({_pool.BlockCount} blocks of {BlockSize}); raise {_options.PoolFlag}");
        }

        int vocab = _options.VocabSize;
        for (int i = 0; i < prompt.Count; i++)
        {
            if ((uint)prompt[i] >= (uint)vocab)
            {
                throw new ArgumentException($"prompt token {i} is {prompt[i]}, outside the vocabulary of {vocab}");
            }
        }
    }

    /// <summary>Cancels a live request (any thread); false when none has that id.</summary>
    public bool Cancel(string requestId)
    {
        if (requestId is null || !_live.TryGetValue(requestId, out LiveRequest<TState>? live))
        {
            return false;
        }

        _commands.Enqueue(new Command(null, live));
        return true;
    }

    private async IAsyncEnumerable<EngineOutput> ReadAsync(LiveRequest<TState> live, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        bool finished = false;
        using CancellationTokenRegistration registration = cancellationToken.Register(() => Cancel(live.Request.Id));
        try
        {
            await foreach (EngineOutput output in live.Outputs.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                finished = output.FinishReason is not null;
                yield return output;
            }
        }
        finally
        {
            if (!finished)
            {
                // The consumer stopped reading (or the engine stopped): free the request's blocks.
                Cancel(live.Request.Id);
            }
        }
    }

    /// <summary>
    /// Runs the queued commands, then plans the next step (engine loop). Null when there is nothing to do (the
    /// loop then waits for a command); an empty step when nothing fits (cannot happen with checked requests: the
    /// loop waits a little rather than spin). Calls <see cref="BeforeStep"/> before returning a step to run.
    /// </summary>
    public SchedulerStep? NextStep()
    {
        DrainCommands();
        if (!_scheduler.HasWork)
        {
            _stats = Snapshot();
            return null;
        }

        SchedulerStep step = _scheduler.Schedule();
        if (step.IsEmpty)
        {
            _stats = Snapshot();
            return step;
        }

        StampScheduled(step);
        BeforeStep?.Invoke(_steps);
        return step;
    }

    /// <summary>Stamps the traced requests a step runs for the first time (a loop over the batch, nothing allocated).</summary>
    private static void StampScheduled(SchedulerStep step)
    {
        IReadOnlyList<ScheduledChunk> chunks = step.Chunks;
        for (int i = 0; i < chunks.Count; i++)
        {
            if (LiveRequest<TState>.Of(chunks[i].Sequence).Trace is { Scheduled.Ticks: 0 } trace)
            {
                trace.Scheduled = DateTime.UtcNow;
            }
        }
    }

    /// <summary>Blocks the engine's thread until a command arrives, <paramref name="millisecondsTimeout"/> passes or the engine stops.</summary>
    public void WaitForCommands(int millisecondsTimeout) => _commands.Wait(millisecondsTimeout, _stop.Token);

    /// <summary>Completes when a command arrives; throws <see cref="OperationCanceledException"/> when the engine stops.</summary>
    public Task WaitForCommandsAsync() => _commands.WaitAsync(_stop.Token);

    /// <summary>
    /// Runs <paramref name="run"/> (the engine's computation of the step, which ends with <see cref="Scheduler.Complete"/>
    /// and an <see cref="Emit"/> per sampled token); a step that throws ends its requests with the error. Then
    /// tells the scheduler's <see cref="Scheduler.Cost"/> what the step took (<paramref name="costMs"/>, an engine
    /// that models its time, or else the time <paramref name="run"/> took), counts the step and publishes the stats
    /// (engine loop).
    /// </summary>
    public void RunStep(SchedulerStep step, Action<SchedulerStep> run, double? costMs = null)
    {
        // The step's shape as planned, what its time is learned against.
        int prefill = step.PrefillTokens, decode = step.DecodeTokens;
        long start = Stopwatch.GetTimestamp();
        bool ran = false;
        try
        {
            run(step);
            ran = true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            FailStep(step, e);
        }

        if (ran)
        {
            double ms = costMs ?? Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            _scheduler.Cost.Observe(prefill, decode, ms);
            _stepMs = _steps == 0 ? ms : StepMsSmoothing * ms + (1 - StepMsSmoothing) * _stepMs;
        }

        _steps++;
        _stats = Snapshot();
    }

    /// <summary>Weight of the latest step in <see cref="EngineStats.StepMs"/> (an exponential moving average over about 10 steps).</summary>
    private const double StepMsSmoothing = 0.1;

    /// <summary>
    /// Appends a token the engine produced for <paramref name="live"/> and sends it (engine loop). The request ends
    /// with <c>stop</c> when <paramref name="stop"/> (the engine's own end: an EOS token not ignored, the echo's end)
    /// or the token is one of its stop_token_ids, else with <c>length</c> at max_tokens or the sequence's maximum
    /// length; its last output carries its KV when it asked to export it.
    /// </summary>
    public void Emit(LiveRequest<TState> live, int token, bool stop, IReadOnlyList<float>? logprobs, IReadOnlyList<IReadOnlyList<TokenLogprob>>? topLogprobs)
    {
        SequenceState s = live.Sequence;
        SamplingParams p = live.Request.Sampling;
        s.AppendToken(token);
        _generatedTokens++;
        if (live.Trace is { FirstToken.Ticks: 0 } trace)
        {
            trace.FirstToken = DateTime.UtcNow;
        }

        FinishReason? finish = null;
        if (stop || p.StopTokenIds.Contains(token))
        {
            finish = FinishReason.Stop;
        }
        else if (s.OutputLength >= p.MaxTokens || s.Tokens.Count >= s.MaxLength)
        {
            finish = FinishReason.Length;
        }

        KvPushResult? pushed = finish is not null && live.Request is { ExportKv: true, PushKvTo: { } target } ? _kvStore?.Push(s.Blocks, s.ComputedTokens, target) : null;
        var output = new EngineOutput
        {
            TokenIds = [token],
            Logprobs = logprobs,
            TopLogprobs = topLogprobs,
            FinishReason = finish,
            PromptTokens = live.Request.OriginalPromptLength,
            CachedTokens = Math.Clamp(s.CachedPromptTokens, 0, live.Request.OriginalPromptLength),
            ImportedTokens = live.ImportedTokens,
            Kv = finish is not null && live.Request.ExportKv && pushed is null ? _kvStore?.Export(s.Blocks, s.ComputedTokens) : null,
            KvPushed = pushed,
        };
        if (finish is null)
        {
            live.Outputs.Writer.TryWrite(output);
        }
        else
        {
            End(live, output);
        }
    }

    private void DrainCommands()
    {
        while (_commands.TryDequeue(out Command command))
        {
            if (command.Submit is { } submit)
            {
                // A Cancel by id may overtake the submit it follows (both are queued by other threads): it ended the request already.
                if (submit.Sequence.Status != SequenceStatus.Finished)
                {
                    Admit(submit);
                }
            }
            else if (command.KvArrived is { } arrived)
            {
                KvArrived(arrived);
            }
            else if (command.Cancel is { } cancel && cancel.Sequence.Status != SequenceStatus.Finished)
            {
                End(cancel, new EngineOutput
                {
                    TokenIds = [],
                    FinishReason = FinishReason.Cancelled,
                    PromptTokens = cancel.Request.OriginalPromptLength,
                    CachedTokens = Math.Clamp(cancel.Sequence.CachedPromptTokens, 0, cancel.Request.OriginalPromptLength),
                    ImportedTokens = cancel.ImportedTokens,
                });
            }
            else
            {
                command.Inspect?.Invoke();
            }
        }
    }

    /// <summary>Queues a submitted request: with the KV it carries, parked for its deferred KV, or to be prefilled here.</summary>
    private void Admit(LiveRequest<TState> live)
    {
        _promptTokens += live.Sequence.PromptLength;
        if (live.Request.DeferredKv is { } deferred)
        {
            Reserve(live, deferred);
        }
        else if (live.Request.Kv is not { } kv || !TryImport(live, kv))
        {
            _scheduler.Enqueue(live.Sequence);
        }
    }

    /// <summary>Queues a request with transferred KV as computed, its blocks reserved and written; false (nothing changed) when it cannot be used.</summary>
    private bool TryImport(LiveRequest<TState> live, KvTransferPayload kv)
    {
        int tokens = kv.Layout.TokenCount;
        if (_kvStore is null || tokens < 1 || tokens >= live.Sequence.Tokens.Count || !_kvStore.CanImport(kv)
            || !_scheduler.TryReserveComputed(live.Sequence, tokens))
        {
            _importsRefused++;
            return false;
        }

        Write(live, kv);
        return true;
    }

    /// <summary>Writes transferred KV into the blocks reserved for it and queues the request with those tokens computed.</summary>
    private void Write(LiveRequest<TState> live, KvTransferPayload kv)
    {
        int tokens = kv.Layout.TokenCount;
        _kvStore!.Import(live.Sequence.Blocks, kv);
        _scheduler.EnqueueComputed(live.Sequence, tokens);
        live.ImportedTokens = tokens;
        live.Trace?.Queued = DateTime.UtcNow;
    }

    /// <summary>
    /// Reserves the blocks of a deferred import and parks the request (acting at once on a payload or failure that
    /// came before), or, when it cannot, queues the request to be prefilled here.
    /// </summary>
    private void Reserve(LiveRequest<TState> live, DeferredKvImport deferred)
    {
        int tokens = deferred.TokenCount;
        int prompt = live.Sequence.PromptLength;
        string? unreserved =
            _kvStore is null ? $"the {_owner.Name} engine has no KV to import"
            : tokens >= prompt ? $"{tokens} tokens of KV for a prompt of {prompt} (at least its last token must be computed here)"
            : !_scheduler.TryReserveComputed(live.Sequence, tokens) ? $"too few free KV blocks for {tokens} tokens ({_pool.BlocksFor(tokens)} needed, {_pool.FreeCount} free)"
            : null;
        if (unreserved is not null)
        {
            _scheduler.Enqueue(live.Sequence);
            deferred.End(KvImportStatus.NotReserved, unreserved);
            return;
        }

        deferred.SetReserved();
        KvArrived(live);
    }

    /// <summary>
    /// Acts on what arrived for a parked request (nothing when it is not parked: ended, not yet reserved, or already
    /// resumed): imports a payload that fits into its blocks, else releases them and queues it to be prefilled here.
    /// </summary>
    private void KvArrived(LiveRequest<TState> live)
    {
        DeferredKvImport deferred = live.Request.DeferredKv!;
        if (live.Sequence.Status != SequenceStatus.Reserved || deferred.TakeArrival() is not { } arrival)
        {
            return;
        }

        int tokens = deferred.TokenCount;
        if (arrival is KvTransferPayload kv && kv.Layout.TokenCount == tokens && _kvStore!.CanImport(kv))
        {
            Write(live, kv);
            deferred.End(KvImportStatus.Imported, $"{tokens} tokens imported");
            return;
        }

        _scheduler.ReleaseReservation(live.Sequence);
        _scheduler.Enqueue(live.Sequence);
        live.Trace?.Queued = DateTime.UtcNow;
        if (arrival is KvTransferPayload refused)
        {
            _importsRefused++;
            KvTransferLayout layout = refused.Layout;
            deferred.End(KvImportStatus.Refused, layout.TokenCount != tokens
                ? $"the payload has {layout.TokenCount} tokens, {tokens} were reserved"
                : $"the {_owner.Name} engine cannot import a payload of layout {layout.ToJson()} and {refused.Data.Length} bytes");
        }
        else
        {
            deferred.End(KvImportStatus.Failed, (string)arrival);
        }
    }

    private void End(LiveRequest<TState> live, EngineOutput last)
    {
        _scheduler.Finish(live.Sequence);
        live.Request.DeferredKv?.End(KvImportStatus.Cancelled, "the request ended before its KV arrived");
        _live.TryRemove(new KeyValuePair<string, LiveRequest<TState>>(live.Request.Id, live));
        live.Outputs.Writer.TryWrite(last);
        live.Outputs.Writer.TryComplete();
        _finished++;
        live.Trace?.Record(live.Request, live.Sequence, live.ImportedTokens, last.FinishReason);
    }

    private void FailStep(SchedulerStep step, Exception error)
    {
        _fault = error;
        var failed = step.Chunks.Select(c => LiveRequest<TState>.Of(c.Sequence)).Distinct().ToList();
        foreach (LiveRequest<TState> live in failed)
        {
            _scheduler.Finish(live.Sequence);
            _live.TryRemove(new KeyValuePair<string, LiveRequest<TState>>(live.Request.Id, live));
            live.Outputs.Writer.TryComplete(new InvalidOperationException($"the {_owner.Name} engine failed while running request {live.Request.Id}: {error.Message}", error));
            _finished++;
            live.Trace?.Record(live.Request, live.Sequence, live.ImportedTokens, null, error);
        }
    }

    /// <summary>Ends every live stream with <see cref="ObjectDisposedException"/> (engine loop, once it has stopped).</summary>
    public void FailAll()
    {
        Interlocked.Exchange(ref _closed, 1);
        DrainCommands();
        var error = new ObjectDisposedException(_owner.GetType().Name, "the engine stopped");
        foreach (KeyValuePair<string, LiveRequest<TState>> pair in _live)
        {
            if (_live.TryRemove(pair))
            {
                _scheduler.Finish(pair.Value.Sequence);
                pair.Value.Request.DeferredKv?.End(KvImportStatus.Cancelled, "the engine stopped before the request's KV arrived");
                pair.Value.Outputs.Writer.TryComplete(error);
            }
        }
    }

    private EngineStats Snapshot() => new()
    {
        RunningRequests = _scheduler.RunningCount,
        WaitingRequests = _scheduler.WaitingCount,
        AwaitingKvRequests = _scheduler.ReservedCount,
        KvBlocksUsed = _pool.UsedCount,
        KvBlocksTotal = _pool.BlockCount,
        KvCacheBytes = _pool.BlockCount * _options.BlockBytes,
        KvBlocksCached = _pool.CachedCount,
        BlockSize = BlockSize,
        PrefixQueryTokens = _scheduler.PrefixQueryTokens,
        PrefixHitTokens = _scheduler.PrefixHitTokens,
        PromptTokens = _promptTokens,
        GeneratedTokens = _generatedTokens,
        Preemptions = _scheduler.Preemptions,
        RequestsFinished = _finished,
        Steps = _steps,
        KvImportsRefused = _importsRefused,
        StepMs = _stepMs,
        MaxStepMs = _scheduler.Options.MaxStepMs,
    };

    /// <summary>See <see cref="IEngine.DumpKvAsync"/>: taken between steps, so its last event id matches the stream.</summary>
    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken) =>
        _events is null
            ? Task.FromResult(new KvEventDump(_options.WorkerId, 0, []))
            : InspectAsync(pool => pool.Dump(_events.WorkerId)).WaitAsync(cancellationToken);

    /// <summary>The dump, taken at once: only on the engine's loop thread between steps (a driven engine's driver: the simulator).</summary>
    public KvEventDump DumpOnLoop() => _events is null ? new KvEventDump(_options.WorkerId, 0, []) : _pool.Dump(_events.WorkerId);

    /// <summary>Runs <paramref name="action"/> on the pool between steps (any thread; tests: invariants, dumps).</summary>
    public Task<T> InspectAsync<T>(Func<KvBlockPool, T> action)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _commands.Enqueue(new Command(null, null, () =>
        {
            try
            {
                done.SetResult(action(_pool));
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }));
        return done.Task;
    }

    /// <summary>
    /// Stops the engine (any thread, once: false for a later call): tells the loop, waits for
    /// <paramref name="loopEnded"/> (the loop has called <see cref="FailAll"/>), releases the stop source.
    /// </summary>
    public async ValueTask<bool> StopAsync(Func<Task> loopEnded)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            return false;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        await loopEnded().ConfigureAwait(false);
        _stop.Dispose();
        return true;
    }

    /// <summary>One of: a request to queue, a request to cancel, an action to run between steps, a request whose deferred KV arrived.</summary>
    private readonly record struct Command(LiveRequest<TState>? Submit, LiveRequest<TState>? Cancel, Action? Inspect = null, LiveRequest<TState>? KvArrived = null);
}

using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using System.Threading.Channels;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Mocker;

/// <summary>
/// A simulated serving engine: the real engine's <see cref="Scheduler"/> over a <see cref="KvBlockPool"/>
/// (continuous batching, chunked prefill, prefix reuse, eviction, preemption, KV events) with no model.
/// Each step sleeps for the time the cost model of <see cref="MockerOptions"/> gives it, then every sequence
/// that reached its end gets a synthetic token. The request bookkeeping (checks, command queue, output
/// channels, cancellation, stats, KV transfer) is the <see cref="EngineCore{TState}"/> the built-in engine
/// runs too; this class keeps its async loop, paced by the <see cref="TimeProvider"/>, and its step.
/// <para>
/// Outside, it behaves like the real engine: the same submit-time checks and messages, the same stats, and
/// for the same requests, arrival order and generated tokens, the same scheduling decisions and KV events.
/// Generated tokens never contain an end-of-sequence token (a request ends with <c>length</c>, or
/// <c>stop</c> when a synthetic token is one of its stop_token_ids). Log-probabilities, when asked for, are
/// synthetic: the chosen token has ln 0.5 and the k-th alternative ln 0.5^(k+1).
/// </para>
/// </summary>
public sealed class MockerEngine : IEngine
{
    /// <summary>The <see cref="KvTransferLayout.Dtype"/> of a mocker's (empty) KV transfer: it carries only the token count.</summary>
    public const string MockerKvDtype = MockerKvTransfer.Dtype;

    /// <summary>Falling further behind the cost model than this (a busy machine) restarts the pacing instead of catching up.</summary>
    private static readonly TimeSpan MaxLag = TimeSpan.FromMilliseconds(50);

    private static readonly float HalfLogprob = MathF.Log(0.5f);

    private readonly MockerOptions _options;
    private readonly TimeProvider _time;
    private readonly EngineCore<ulong> _core;
    private readonly Action<SchedulerStep> _completeStep;
    private readonly Task _loop;
    /// <summary>How long a loop waits before planning again when a step fits nothing.</summary>
    internal static readonly TimeSpan EmptyStepRetry = TimeSpan.FromMilliseconds(10);

    private SchedulerStep? _planned;
    private double _plannedMs;
    private bool _paced;
    private long _deadline;
    private long _pacedTicks;

    /// <param name="options">Pool, batch limits and cost model; null for the defaults.</param>
    /// <param name="timeProvider">The clock steps wait on; null for the system clock.</param>
    public MockerEngine(MockerOptions? options = null, TimeProvider? timeProvider = null)
        : this(options, timeProvider, ownLoop: true)
    {
    }

    private MockerEngine(MockerOptions? options, TimeProvider? timeProvider, bool ownLoop)
    {
        _options = (options ?? MockerOptions.Default).Validate();
        _time = timeProvider ?? TimeProvider.System;
        var core = new EngineCoreOptions
        {
            BlockSize = _options.BlockSize,
            BlockCount = _options.NumGpuBlocks,
            ContextLength = _options.ContextLength,
            VocabSize = _options.VocabSize,
            PoolFlag = "--num-gpu-blocks",
            Scheduler = new SchedulerOptions { MaxNumSeqs = _options.MaxNumSeqs, MaxNumBatchedTokens = _options.MaxNumBatchedTokens, MaxStepMs = _options.MaxStepMs },
            StepCostSeed = new StepCost(_options.StepMs, _options.PrefillMsPerToken, _options.DecodeMsPerSequence),
            PrefixCaching = _options.PrefixCaching,
            WorkerId = _options.WorkerId,
            EventHistory = _options.EventHistory,
            KvEventLoss = _options.KvEventLoss,
            KvEventLossSeed = _options.Seed,
        };
        ulong seed = _options.Seed;
        _core = new EngineCore<ulong>(this, core, r => SyntheticTokens.Key(seed, r.ResumedOutputTokens == 0 ? r.PromptTokens : r.PromptTokens.Take(r.OriginalPromptLength).ToArray(), r.Sampling.Seed), new MockerKvTransfer(_options.BlockSize));
        _completeStep = CompleteStep;
        _loop = ownLoop ? Task.Run(LoopAsync) : Task.CompletedTask;
    }

    /// <inheritdoc/>
    public string Name => "mocker";

    /// <inheritdoc/>
    public int BlockSize => _core.BlockSize;

    /// <inheritdoc/>
    public int ContextLength => _core.ContextLength;

    /// <summary>Tokens one sequence may reach: the context length, or the whole KV pool if that is smaller.</summary>
    public int MaxSequenceLength => _core.MaxSequenceLength;

    /// <summary>The settings this engine runs with.</summary>
    public MockerOptions Options => _options;

    /// <inheritdoc/>
    public EngineStats Stats => _core.Stats;

    /// <inheritdoc/>
    public KvEventLog? KvEvents => _core.KvEvents;

    /// <summary>The error of the last step that failed (a bug: the mocker computes nothing that can fail).</summary>
    public Exception? Fault => _core.Fault;

    /// <inheritdoc/>
    public IAsyncEnumerable<EngineOutput> SubmitAsync(EngineRequest request, CancellationToken cancellationToken = default) =>
        _core.Submit(request, cancellationToken);

    /// <inheritdoc/>
    public bool Cancel(string requestId) => _core.Cancel(requestId);

    /// <inheritdoc/>
    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default) => _core.DumpKvAsync(cancellationToken);

    /// <summary>The shared request bookkeeping (tests: <see cref="EngineCore{TState}.InspectAsync{T}"/>, <see cref="EngineCore{TState}.BeforeStep"/>).</summary>
    internal EngineCore<ulong> Core => _core;

    /// <summary>The modelled time of every step run so far (speedup applied): what the clock was asked to wait in all.</summary>
    internal TimeSpan PacedTime => TimeSpan.FromTicks(Interlocked.Read(ref _pacedTicks));

    /// <summary>Replaces the synthetic tokens: (request id, output index) to token (tests replay another engine's tokens).</summary>
    internal Func<string, int, int>? TokenOverride { get; set; }

    /// <summary>
    /// A mocker without its loop, for a caller that runs it step by step on one thread on a virtual clock (the
    /// simulator): <see cref="SubmitPolled"/>, then <see cref="PlanStep"/> and, once the step's time has passed,
    /// <see cref="RunPlannedStep"/>; the same steps and cost model as the loop's.
    /// </summary>
    internal static MockerEngine Driven(MockerOptions options) => new(options, TimeProvider.System, ownLoop: false);

    /// <summary>Queues a request whose outputs the caller reads after each step (a <see cref="Driven"/> engine).</summary>
    internal ChannelReader<EngineOutput> SubmitPolled(EngineRequest request) => _core.SubmitPolled(request);

    /// <summary>
    /// Runs the queued commands and plans the next step: null when there is nothing to do; else how long the step
    /// takes by the cost model (speedup applied), after which <see cref="RunPlannedStep"/> completes it. A step that
    /// fits nothing (cannot happen with checked requests) plans nothing and asks for a retry after <see cref="EmptyStepRetry"/>.
    /// </summary>
    internal TimeSpan? PlanStep()
    {
        SchedulerStep? step = _core.NextStep();
        _planned = step is { IsEmpty: false } ? step : null;
        PlannedNothing = step is { IsEmpty: true };
        if (step is null)
        {
            return null;
        }

        if (_planned is null)
        {
            return EmptyStepRetry;
        }

        _plannedMs = CostMs(step);
        return _options.Paced(_plannedMs);
    }

    /// <summary>Its KV dump now, for a <see cref="Driven"/> engine's driver between steps (no command queue to wait for).</summary>
    internal KvEventDump DumpBetweenSteps() => _core.DumpOnLoop();

    /// <summary>
    /// Whether the last <see cref="PlanStep"/> found work but fitted none of it (its retry time says nothing: a real step
    /// can take exactly <see cref="EmptyStepRetry"/>, as 8 ms + 40 prefill tokens x 0.05 ms does).
    /// </summary>
    internal bool PlannedNothing { get; private set; }

    /// <summary>Completes the step <see cref="PlanStep"/> planned (nothing when it planned none): its tokens are emitted.</summary>
    internal void RunPlannedStep()
    {
        if (_planned is { } step)
        {
            _planned = null;
            _core.RunStep(step, _completeStep, _plannedMs);
        }
    }

    private async Task LoopAsync()
    {
        CancellationToken stop = _core.Stopping;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                TimeSpan? time = PlanStep();
                if (time is null)
                {
                    _paced = false;
                    await _core.WaitForCommandsAsync().ConfigureAwait(false);
                }
                else if (_planned is null)
                {
                    await Task.Delay(time.Value, _time, stop).ConfigureAwait(false);
                }
                else
                {
                    await PaceAsync(time.Value, stop).ConfigureAwait(false);
                    RunPlannedStep();
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Disposed.
        }

        _core.FailAll();
    }

    /// <summary>The cost model applied to a planned step: its simulated milliseconds, before the speedup.</summary>
    private double CostMs(SchedulerStep step)
    {
        long prefill = 0, pairs = 0;
        int decoding = 0;
        foreach (ScheduledChunk c in step.Chunks)
        {
            if (c.TokenCount == 1 && c.StartPos >= c.Sequence.PromptLength)
            {
                decoding++;
            }
            else
            {
                // Query at position p attends to keys 0..p: p + 1 pairs.
                prefill += c.TokenCount;
                pairs += (long)c.TokenCount * c.StartPos + (long)c.TokenCount * (c.TokenCount + 1) / 2;
            }
        }

        return _options.StepMilliseconds(prefill, pairs, decoding);
    }

    /// <summary>
    /// Waits until the step's simulated end. Steps are paced against a running deadline rather than slept one by
    /// one, so a timer that fires late (timers are coarser than fast steps) is made up by the next steps.
    /// </summary>
    private async ValueTask PaceAsync(TimeSpan cost, CancellationToken cancellationToken)
    {
        Interlocked.Add(ref _pacedTicks, cost.Ticks);
        long now = _time.GetTimestamp();
        if (!_paced || _time.GetElapsedTime(_deadline, now) > MaxLag)
        {
            _deadline = now;
            _paced = true;
        }

        _deadline += (long)(cost.Ticks * (_time.TimestampFrequency / (double)TimeSpan.TicksPerSecond));
        TimeSpan wait = _time.GetElapsedTime(now, _deadline);
        if (wait > TimeSpan.Zero)
        {
            await DelayAsync(wait, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// <c>Task.Delay(wait, _time, cancellationToken)</c> at tick precision: Task.Delay truncates its delay to whole
    /// milliseconds, which would make every sub-millisecond step free and put an exact clock off by fractions.
    /// </summary>
    private async Task DelayAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using ITimer timer = _time.CreateTimer(static state => ((TaskCompletionSource)state!).TrySetResult(), done, wait, Timeout.InfiniteTimeSpan);
        using CancellationTokenRegistration registration = cancellationToken.Register(() => done.TrySetCanceled(cancellationToken));
        await done.Task.ConfigureAwait(false);
    }

    private void CompleteStep(SchedulerStep step)
    {
        _core.Scheduler.Complete(step);
        foreach (ScheduledChunk c in step.Chunks)
        {
            if (c.SamplesToken && c.Sequence.Status == SequenceStatus.Running)
            {
                Emit(LiveRequest<ulong>.Of(c.Sequence));
            }
        }
    }

    private void Emit(LiveRequest<ulong> live)
    {
        SamplingParams p = live.Request.Sampling;
        int index = live.Request.ResumedOutputTokens + live.Sequence.OutputLength;
        int token = TokenOverride?.Invoke(live.Request.Id, index) ?? SyntheticTokens.Token(live.State, index, _options.VocabSize);
        _core.Emit(live, token, stop: false, p.Logprobs ? [HalfLogprob] : null, p.Logprobs && p.TopLogprobs > 0 ? [TopLogprobs(token, p.TopLogprobs)] : null);
    }

    /// <summary>The chosen token with probability 1/2, then the next ids with 1/4, 1/8, ...</summary>
    private TokenLogprob[] TopLogprobs(int token, int count)
    {
        var top = new TokenLogprob[count];
        for (int k = 0; k < count; k++)
        {
            top[k] = new TokenLogprob((int)((token + (long)k) % _options.VocabSize), HalfLogprob * (k + 1));
        }

        return top;
    }

    /// <summary>Stops the loop; live streams end with <see cref="ObjectDisposedException"/>.</summary>
    public async ValueTask DisposeAsync() => await _core.StopAsync(() => _loop).ConfigureAwait(false);
}

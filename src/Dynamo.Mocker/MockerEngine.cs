using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Mocker;

/// <summary>
/// A simulated serving engine: the real engine's <see cref="Scheduler"/> over a <see cref="KvBlockPool"/>
/// (continuous batching, chunked prefill, prefix reuse, eviction, preemption, KV events) with no model.
/// Each step sleeps for the time the cost model of <see cref="MockerOptions"/> gives it, then every sequence
/// that reached its end gets a synthetic token. One loop owns the scheduler and the pool; other threads
/// talk to it through a command queue, so submit and cancel never wait for a step. Outputs go to one
/// unbounded channel per request (a request's output is bounded by its max_tokens).
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
    public const string MockerKvDtype = "mocker";

    /// <summary>Falling further behind the cost model than this (a busy machine) restarts the pacing instead of catching up.</summary>
    private static readonly TimeSpan MaxLag = TimeSpan.FromMilliseconds(50);

    private static readonly float HalfLogprob = MathF.Log(0.5f);

    private readonly MockerOptions _options;
    private readonly TimeProvider _time;
    private readonly Scheduler _scheduler;
    private readonly KvBlockPool _pool;
    private readonly KvEventLog? _events;
    private readonly Channel<Command> _commands = Channel.CreateUnbounded<Command>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<string, Live> _live = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private volatile EngineStats _stats;
    private long _promptTokens;
    private long _generatedTokens;
    private long _finished;
    private long _steps;
    private long _importsRefused;
    private bool _paced;
    private long _deadline;
    private int _disposed;

    /// <param name="options">Pool, batch limits and cost model; null for the defaults.</param>
    /// <param name="timeProvider">The clock steps wait on; null for the system clock.</param>
    public MockerEngine(MockerOptions? options = null, TimeProvider? timeProvider = null)
    {
        _options = (options ?? MockerOptions.Default).Validate();
        _time = timeProvider ?? TimeProvider.System;
        BlockSize = _options.BlockSize;
        ContextLength = _options.ContextLength;
        _events = _options.PrefixCaching ? new KvEventLog(_options.WorkerId, _options.EventHistory) : null;
        _pool = new KvBlockPool(_options.NumGpuBlocks, BlockSize, _events, _options.PrefixCaching);
        _scheduler = new Scheduler(new SchedulerOptions { MaxNumSeqs = _options.MaxNumSeqs, MaxNumBatchedTokens = _options.MaxNumBatchedTokens }, _pool);
        MaxSequenceLength = (int)Math.Min(ContextLength, (long)_options.NumGpuBlocks * BlockSize);
        _stats = Snapshot();
        _loop = Task.Run(LoopAsync);
    }

    /// <inheritdoc/>
    public string Name => "mocker";

    /// <inheritdoc/>
    public int BlockSize { get; }

    /// <inheritdoc/>
    public int ContextLength { get; }

    /// <summary>Tokens one sequence may reach: the context length, or the whole KV pool if that is smaller.</summary>
    public int MaxSequenceLength { get; }

    /// <summary>The settings this engine runs with.</summary>
    public MockerOptions Options => _options;

    /// <inheritdoc/>
    public EngineStats Stats => _stats;

    /// <inheritdoc/>
    public KvEventLog? KvEvents => _events;

    /// <summary>Thrown into every live stream of a step that failed (a bug: the mocker computes nothing that can fail).</summary>
    public Exception? Fault { get; private set; }

    /// <inheritdoc/>
    public IAsyncEnumerable<EngineOutput> SubmitAsync(EngineRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested, this);
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

        if (prompt.Count >= ContextLength)
        {
            throw new ArgumentException($"the prompt has {prompt.Count} tokens, but the context length is {ContextLength} (at least one token must be left to generate)");
        }

        if (prompt.Count >= MaxSequenceLength)
        {
            throw new ArgumentException($"the prompt has {prompt.Count} tokens, but the whole KV cache holds {MaxSequenceLength} ({_pool.BlockCount} blocks of {BlockSize}); raise --num-gpu-blocks");
        }

        int vocab = _options.VocabSize;
        for (int i = 0; i < prompt.Count; i++)
        {
            if ((uint)prompt[i] >= (uint)vocab)
            {
                throw new ArgumentException($"prompt token {i} is {prompt[i]}, outside the vocabulary of {vocab}");
            }
        }

        var sequence = new SequenceState(request.Id, prompt, MaxSequenceLength, request.Sampling.MaxTokens);
        var live = new Live(request, sequence, SyntheticTokens.Key(_options.Seed, prompt, request.Sampling.Seed));
        sequence.Tag = live;
        if (!_live.TryAdd(request.Id, live))
        {
            throw new ArgumentException($"a request with id '{request.Id}' is already running");
        }

        _commands.Writer.TryWrite(new Command(live, null));
        return ReadAsync(live, cancellationToken);
    }

    /// <inheritdoc/>
    public bool Cancel(string requestId)
    {
        if (requestId is null || !_live.TryGetValue(requestId, out Live? live))
        {
            return false;
        }

        _commands.Writer.TryWrite(new Command(null, live));
        return true;
    }

    private async IAsyncEnumerable<EngineOutput> ReadAsync(Live live, [EnumeratorCancellation] CancellationToken cancellationToken)
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

    private async Task LoopAsync()
    {
        CancellationToken stop = _stop.Token;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                DrainCommands();
                if (!_scheduler.HasWork)
                {
                    _stats = Snapshot();
                    _paced = false;
                    await _commands.Reader.WaitToReadAsync(stop).ConfigureAwait(false);
                    continue;
                }

                SchedulerStep step = _scheduler.Schedule();
                if (step.IsEmpty)
                {
                    // Nothing fits this step (cannot happen with validated requests); do not spin.
                    _stats = Snapshot();
                    await Task.Delay(TimeSpan.FromMilliseconds(10), _time, stop).ConfigureAwait(false);
                    continue;
                }

                BeforeStep?.Invoke(_steps);
                await PaceAsync(Cost(step), stop).ConfigureAwait(false);
                try
                {
                    CompleteStep(step);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    FailStep(step, e);
                }

                _steps++;
                _stats = Snapshot();
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Disposed.
        }

        FailAll(new ObjectDisposedException(nameof(MockerEngine), "the engine stopped"));
    }

    /// <summary>The cost model applied to a planned step.</summary>
    private TimeSpan Cost(SchedulerStep step)
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

        return _options.StepTime(prefill, pairs, decoding);
    }

    /// <summary>
    /// Waits until the step's simulated end. Steps are paced against a running deadline rather than slept one by
    /// one, so a timer that fires late (timers are coarser than fast steps) is made up by the next steps.
    /// </summary>
    private async ValueTask PaceAsync(TimeSpan cost, CancellationToken cancellationToken)
    {
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

    private void DrainCommands()
    {
        while (_commands.Reader.TryRead(out Command command))
        {
            if (command.Submit is { } submit)
            {
                _promptTokens += submit.Sequence.PromptLength;
                if (submit.Request.Kv is not { } kv || !TryImport(submit, kv))
                {
                    _scheduler.Enqueue(submit.Sequence);
                }
            }
            else if (command.Cancel is { } cancel && cancel.Sequence.Status != SequenceStatus.Finished)
            {
                End(cancel, new EngineOutput
                {
                    TokenIds = [],
                    FinishReason = FinishReason.Cancelled,
                    PromptTokens = cancel.Sequence.PromptLength,
                    CachedTokens = Math.Max(0, cancel.Sequence.CachedPromptTokens),
                    ImportedTokens = cancel.ImportedTokens,
                });
            }
            else
            {
                command.Inspect?.Invoke();
            }
        }
    }

    /// <summary>
    /// Takes a transferred prefix from another mocker (see <see cref="Export"/>): reserves blocks for it and skips
    /// its prefill. A payload of another layout (a real engine's tensors) is refused and prefilled here.
    /// </summary>
    private bool TryImport(Live live, KvTransferPayload kv)
    {
        KvTransferLayout l = kv.Layout;
        if (l.Dtype != MockerKvDtype || l.TokenCount < 1 || l.TokenCount >= live.Sequence.Tokens.Count
            || !_scheduler.TryEnqueueComputed(live.Sequence, l.TokenCount))
        {
            _importsRefused++;
            return false;
        }

        live.ImportedTokens = l.TokenCount;
        return true;
    }

    private KvTransferPayload Export(SequenceState s) => new(
        new KvTransferLayout { Layers = 0, KvHeads = 0, HeadDim = 0, Dtype = MockerKvDtype, BlockSize = BlockSize, TokenCount = s.ComputedTokens },
        ReadOnlyMemory<byte>.Empty);

    private void CompleteStep(SchedulerStep step)
    {
        _scheduler.Complete(step);
        foreach (ScheduledChunk c in step.Chunks)
        {
            if (c.SamplesToken && c.Sequence.Status == SequenceStatus.Running)
            {
                Emit((Live)c.Sequence.Tag!);
            }
        }
    }

    private void Emit(Live live)
    {
        SequenceState s = live.Sequence;
        SamplingParams p = live.Request.Sampling;
        int index = s.OutputLength;
        int token = TokenOverride?.Invoke(live.Request.Id, index) ?? SyntheticTokens.Token(live.Key, index, _options.VocabSize);
        s.AppendToken(token);
        _generatedTokens++;
        FinishReason? finish = null;
        if (p.StopTokenIds.Contains(token))
        {
            finish = FinishReason.Stop;
        }
        else if (s.OutputLength >= p.MaxTokens || s.Tokens.Count >= s.MaxLength)
        {
            finish = FinishReason.Length;
        }

        var output = new EngineOutput
        {
            TokenIds = [token],
            Logprobs = p.Logprobs ? [HalfLogprob] : null,
            TopLogprobs = p.Logprobs && p.TopLogprobs > 0 ? [TopLogprobs(token, p.TopLogprobs)] : null,
            FinishReason = finish,
            PromptTokens = s.PromptLength,
            CachedTokens = Math.Max(0, s.CachedPromptTokens),
            ImportedTokens = live.ImportedTokens,
            Kv = finish is not null && live.Request.ExportKv ? Export(s) : null,
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

    private void End(Live live, EngineOutput last)
    {
        _scheduler.Finish(live.Sequence);
        _live.TryRemove(new KeyValuePair<string, Live>(live.Request.Id, live));
        live.Outputs.Writer.TryWrite(last);
        live.Outputs.Writer.TryComplete();
        _finished++;
    }

    private void FailStep(SchedulerStep step, Exception error)
    {
        Fault = error;
        var failed = step.Chunks.Select(c => (Live)c.Sequence.Tag!).Distinct().ToList();
        foreach (Live live in failed)
        {
            _scheduler.Finish(live.Sequence);
            _live.TryRemove(new KeyValuePair<string, Live>(live.Request.Id, live));
            live.Outputs.Writer.TryComplete(new InvalidOperationException($"the mocker failed while running request {live.Request.Id}: {error.Message}", error));
            _finished++;
        }
    }

    private void FailAll(Exception error)
    {
        DrainCommands();
        foreach (Live live in _live.Values)
        {
            _scheduler.Finish(live.Sequence);
            live.Outputs.Writer.TryComplete(error);
        }

        _live.Clear();
    }

    private EngineStats Snapshot() => new()
    {
        RunningRequests = _scheduler.RunningCount,
        WaitingRequests = _scheduler.WaitingCount,
        KvBlocksUsed = _pool.UsedCount,
        KvBlocksTotal = _pool.BlockCount,
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
    };

    /// <summary>Called on the engine loop before each step's wait with the step number (tests pace the engine with it).</summary>
    internal Action<long>? BeforeStep { get; set; }

    /// <summary>Replaces the synthetic tokens: (request id, output index) to token (tests replay another engine's tokens).</summary>
    internal Func<string, int, int>? TokenOverride { get; set; }

    /// <inheritdoc/>
    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default) =>
        _events is null
            ? Task.FromResult(new KvEventDump(_options.WorkerId, 0, []))
            : InspectAsync(pool => pool.Dump(_events.WorkerId)).WaitAsync(cancellationToken);

    /// <summary>Runs <paramref name="action"/> on the engine's state between steps (tests: pool invariants, dumps).</summary>
    internal Task<T> InspectAsync<T>(Func<KvBlockPool, T> action)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _commands.Writer.TryWrite(new Command(null, null, () =>
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

    /// <summary>Stops the loop; live streams end with <see cref="ObjectDisposedException"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }

    private readonly record struct Command(Live? Submit, Live? Cancel, Action? Inspect = null);

    private sealed class Live(EngineRequest request, SequenceState sequence, ulong key)
    {
        public EngineRequest Request { get; } = request;
        public SequenceState Sequence { get; } = sequence;
        public ulong Key { get; } = key;
        public int ImportedTokens { get; set; }
        public Channel<EngineOutput> Outputs { get; } = Channel.CreateUnbounded<EngineOutput>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    }
}

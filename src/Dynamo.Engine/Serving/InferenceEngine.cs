using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Sampling;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Engine.Serving;

/// <summary>
/// The built-in serving engine: a <see cref="Scheduler"/> over a <see cref="KvBlockPool"/> plans each step
/// (continuous batching, chunked prefill, prefix reuse, preemption), one <see cref="Transformer"/> forward
/// runs all of the step's tokens together on a <see cref="PagedKvCache"/>, and each sequence that reached
/// its end samples its next token. One dedicated thread owns the scheduler, the pool and the cache;
/// other threads talk to it through a command queue, so submit and cancel never wait for a step.
/// Outputs go to one unbounded channel per request (a request's output is bounded by its max_tokens).
/// </summary>
public sealed class InferenceEngine : IEngine
{
    private readonly Transformer _model;
    private readonly EngineOptions _options;
    private readonly HashSet<int> _eos;
    private readonly Scheduler _scheduler;
    private readonly KvBlockPool _pool;
    private readonly PagedKvCache _cache;
    private readonly KvEventLog? _events;
    private readonly ConcurrentQueue<Command> _commands = new();
    private readonly ConcurrentDictionary<string, Live> _live = new(StringComparer.Ordinal);
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly Thread _thread;
    private readonly int[] _tokens;
    private readonly SequenceSlice[] _slices;
    private readonly float[] _logits;
    private readonly CancellationTokenSource _stop = new();
    private volatile EngineStats _stats;
    private long _promptTokens;
    private long _generatedTokens;
    private long _finished;
    private long _steps;
    private long _importsRefused;

    /// <param name="model">The model; the engine owns it from now on (disposes it).</param>
    /// <param name="eosTokenIds">Tokens that end a sequence unless the request ignores EOS.</param>
    /// <param name="options">Block size, KV budget, batch limits; null for the defaults.</param>
    public InferenceEngine(Transformer model, IEnumerable<int> eosTokenIds, EngineOptions? options = null)
    {
        _options = (options ?? EngineOptions.Default).Validate();
        _model = model;
        ModelConfig c = model.Config;
        _eos = [.. eosTokenIds];
        ContextLength = Math.Min(_options.ContextLength ?? c.ContextLength, c.ContextLength);
        BlockSize = _options.BlockSize;
        long budget = _options.KvCacheMemory ?? (long)(AvailableMemory() * _options.KvCacheMemoryFraction);
        long perBlock = PagedKvCache.BytesPerBlock(c, BlockSize);
        long useful = (long)_options.MaxNumSeqs * ((ContextLength + BlockSize - 1) / BlockSize);
        long blocks = Math.Min(budget / perBlock, _options.KvCacheMemory is null ? useful : long.MaxValue);
        if (blocks < 1)
        {
            throw new ArgumentException($"--kv-cache-memory: {budget} bytes hold no KV block ({perBlock} bytes each at block size {BlockSize})");
        }

        blocks = Math.Min(blocks, int.MaxValue / Math.Max(1, BlockSize * c.KvHeads * c.HeadDim));
        _cache = new PagedKvCache(c, (int)blocks, BlockSize);
        _events = _options.PrefixCaching ? new KvEventLog(_options.WorkerId, _options.EventHistory) : null;
        _pool = new KvBlockPool((int)blocks, BlockSize, _events, _options.PrefixCaching);
        _scheduler = new Scheduler(new SchedulerOptions { MaxNumSeqs = _options.MaxNumSeqs, MaxNumBatchedTokens = _options.MaxNumBatchedTokens }, _pool);
        MaxSequenceLength = (int)Math.Min(ContextLength, blocks * BlockSize);
        _tokens = new int[_options.MaxNumBatchedTokens];
        _slices = new SequenceSlice[_options.MaxNumSeqs];
        _logits = new float[(long)_options.MaxNumSeqs * c.VocabSize];
        _stats = Snapshot();
        _thread = new Thread(Loop) { IsBackground = true, Name = "dynamo-engine" };
        _thread.Start();
    }

    public string Name => "dynamo";

    public int BlockSize { get; }

    public int ContextLength { get; }

    /// <summary>Tokens one sequence may reach: the context length, or the whole KV pool if that is smaller.</summary>
    public int MaxSequenceLength { get; }

    public EngineOptions Options => _options;

    public ModelConfig ModelConfig => _model.Config;

    public EngineStats Stats => _stats;

    public KvEventLog? KvEvents => _events;

    /// <summary>Thrown into every live stream when the engine stops or a step fails.</summary>
    public Exception? Fault { get; private set; }

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
            throw new ArgumentException($"the prompt has {prompt.Count} tokens, but the whole KV cache holds {MaxSequenceLength} ({_pool.BlockCount} blocks of {BlockSize}); raise --kv-cache-memory");
        }

        int vocab = _model.Config.VocabSize;
        for (int i = 0; i < prompt.Count; i++)
        {
            if ((uint)prompt[i] >= (uint)vocab)
            {
                throw new ArgumentException($"prompt token {i} is {prompt[i]}, outside the vocabulary of {vocab}");
            }
        }

        var sequence = new SequenceState(request.Id, prompt, MaxSequenceLength, request.Sampling.MaxTokens);
        var live = new Live(request, sequence, new Sampler(request.Sampling, prompt));
        sequence.Tag = live;
        if (!_live.TryAdd(request.Id, live))
        {
            throw new ArgumentException($"a request with id '{request.Id}' is already running");
        }

        _commands.Enqueue(new Command(live, null));
        _wake.Set();
        return ReadAsync(live, cancellationToken);
    }

    public bool Cancel(string requestId)
    {
        if (requestId is null || !_live.TryGetValue(requestId, out Live? live))
        {
            return false;
        }

        _commands.Enqueue(new Command(null, live));
        _wake.Set();
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
                // The consumer stopped reading (or the engine failed): free the request's blocks.
                Cancel(live.Request.Id);
            }
        }
    }

    private void Loop()
    {
        while (!_stop.IsCancellationRequested)
        {
            _wake.Reset();
            DrainCommands();
            if (!_scheduler.HasWork)
            {
                _stats = Snapshot();
                WaitForWork(Timeout.Infinite);
                continue;
            }

            SchedulerStep step = _scheduler.Schedule();
            if (step.IsEmpty)
            {
                // Nothing fits this step (cannot happen with validated requests); do not spin.
                _stats = Snapshot();
                WaitForWork(10);
                continue;
            }

            BeforeStep?.Invoke(_steps);
            try
            {
                RunStep(step);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                FailStep(step, e);
            }

            _steps++;
            _stats = Snapshot();
        }

        FailAll(new ObjectDisposedException(nameof(InferenceEngine), "the engine stopped"));
    }

    private void WaitForWork(int milliseconds)
    {
        try
        {
            _wake.Wait(milliseconds, _stop.Token);
        }
        catch (OperationCanceledException)
        {
            // Disposed while idle.
        }
    }

    private void DrainCommands()
    {
        while (_commands.TryDequeue(out Command command))
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
                });
            }
            else
            {
                command.Inspect?.Invoke();
            }
        }
    }

    /// <summary>Writes a request's transferred KV into blocks reserved for it; false (nothing changed) when it cannot be used.</summary>
    private bool TryImport(Live live, KvTransferPayload kv)
    {
        KvTransferLayout mine = _cache.Layout(kv.Layout.TokenCount), theirs = kv.Layout;
        if (theirs.Layers != mine.Layers || theirs.KvHeads != mine.KvHeads || theirs.HeadDim != mine.HeadDim || theirs.Dtype != mine.Dtype
            || theirs.TokenCount < 1 || theirs.TokenCount >= live.Sequence.Tokens.Count || kv.Data.Length != theirs.ByteCount)
        {
            _importsRefused++;
            return false;
        }

        if (!_scheduler.TryEnqueueComputed(live.Sequence, theirs.TokenCount))
        {
            _importsRefused++;
            return false;
        }

        _cache.Import(live.Sequence.Blocks.AsSpan(), theirs, kv.Data.Span);
        live.ImportedTokens = theirs.TokenCount;
        return true;
    }

    private KvTransferPayload Export(SequenceState s)
    {
        int n = s.ComputedTokens;
        var data = new byte[_cache.ExportedBytes(n)];
        _cache.Export(s.Blocks.AsSpan(), n, data);
        return new KvTransferPayload(_cache.Layout(n), data);
    }

    private void RunStep(SchedulerStep step)
    {
        int n = 0, rows = 0;
        IReadOnlyList<ScheduledChunk> chunks = step.Chunks;
        for (int i = 0; i < chunks.Count; i++)
        {
            ScheduledChunk c = chunks[i];
            IReadOnlyList<int> tokens = c.Sequence.Tokens;
            for (int t = 0; t < c.TokenCount; t++)
            {
                _tokens[n + t] = tokens[c.StartPos + t];
            }

            _slices[i] = new SequenceSlice(n, c.TokenCount, c.StartPos, c.Sequence.Blocks.Ids, c.SamplesToken);
            n += c.TokenCount;
            rows += c.SamplesToken ? 1 : 0;
        }

        int vocab = _model.Config.VocabSize;
        _model.Forward(_tokens.AsSpan(0, n), _slices.AsSpan(0, chunks.Count), _cache, _logits.AsSpan(0, rows * vocab));
        _scheduler.Complete(step);
        int row = 0;
        foreach (ScheduledChunk c in chunks)
        {
            if (!c.SamplesToken)
            {
                continue;
            }

            Span<float> logits = _logits.AsSpan(row++ * vocab, vocab);
            Sample((Live)c.Sequence.Tag!, logits);
        }
    }

    private void Sample(Live live, Span<float> logits)
    {
        SequenceState s = live.Sequence;
        SamplingParams p = live.Request.Sampling;
        List<TokenLogprob>? top = p.Logprobs && p.TopLogprobs > 0 ? new List<TokenLogprob>(p.TopLogprobs + 1) : null;
        int token = live.Sampler.Sample(logits, top, out float logprob);
        s.AppendToken(token);
        _generatedTokens++;
        FinishReason? finish = null;
        if ((!p.IgnoreEos && _eos.Contains(token)) || p.StopTokenIds.Contains(token))
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
            Logprobs = p.Logprobs ? [logprob] : null,
            TopLogprobs = top is null ? null : [top],
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
            live.Outputs.Writer.TryComplete(new InvalidOperationException($"the engine failed while running request {live.Request.Id}: {error.Message}", error));
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

    /// <summary>Called on the engine thread before each step with the step number (tests pace the engine with it).</summary>
    internal Action<long>? BeforeStep { get; set; }

    /// <inheritdoc/>
    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default) =>
        _events is null
            ? Task.FromResult(new KvEventDump(_options.WorkerId, 0, []))
            : InspectAsync(pool => pool.Dump(_events.WorkerId)).WaitAsync(cancellationToken);

    /// <summary>Runs <paramref name="action"/> on the engine's state between steps (tests: pool invariants, dumps).</summary>
    internal Task<T> InspectAsync<T>(Func<KvBlockPool, T> action)
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
        _wake.Set();
        return done.Task;
    }

    private static long AvailableMemory()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(13).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
            // Not Linux: fall back to what the GC sees.
        }
        catch (UnauthorizedAccessException)
        {
            // Same.
        }

        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _wake.Set();
        await Task.Run(_thread.Join).ConfigureAwait(false);
        _model.Dispose();
        _stop.Dispose();
        _wake.Dispose();
    }

    private readonly record struct Command(Live? Submit, Live? Cancel, Action? Inspect = null);

    private sealed class Live(EngineRequest request, SequenceState sequence, Sampler sampler)
    {
        public EngineRequest Request { get; } = request;
        public SequenceState Sequence { get; } = sequence;
        public Sampler Sampler { get; } = sampler;
        public int ImportedTokens { get; set; }
        public Channel<EngineOutput> Outputs { get; } = Channel.CreateUnbounded<EngineOutput>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    }
}

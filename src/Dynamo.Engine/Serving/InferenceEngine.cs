using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Parallel;
using Dynamo.Engine.Sampling;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Parallel;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Engine.Serving;

/// <summary>
/// The built-in serving engine: a <see cref="Scheduler"/> over a <see cref="KvBlockPool"/> plans each step
/// (continuous batching, chunked prefill, prefix reuse, preemption), one <see cref="Transformer"/> forward
/// runs all of the step's tokens together on a <see cref="PagedKvCache"/>, and each sequence that reached
/// its end samples its next token. One dedicated thread owns the scheduler, the pool and the cache; the
/// request bookkeeping (checks, command queue, output channels, cancellation, stats, KV transfer) is the
/// <see cref="EngineCore{TState}"/> it shares with the mocker, and this class keeps the thread's loop and
/// the step: forward pass and sampling.
/// </summary>
public sealed class InferenceEngine : IEngine
{
    private readonly Transformer _model;
    private readonly EngineOptions _options;
    private readonly HashSet<int> _eos;
    private readonly PagedKvCache _cache;
    private readonly EngineCore<Sampler> _core;
    private readonly Action<SchedulerStep> _runStep;
    private readonly Thread _thread;
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly int[] _tokens;
    private readonly SequenceSlice[] _slices;
    private readonly float[] _logits;
    private readonly SampledRow[] _sampled;
    private readonly TaskCompletionSource<CollectiveException> _groupLost = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _lastLead;

    /// <param name="model">The model; the engine owns it from now on (disposes it). Rank 0 of a tensor-parallel model drives the other ranks through it.</param>
    /// <param name="eosTokenIds">Tokens that end a sequence unless the request ignores EOS.</param>
    /// <param name="options">Block size, KV budget, batch limits; null for the defaults.</param>
    public InferenceEngine(Transformer model, IEnumerable<int> eosTokenIds, EngineOptions? options = null)
    {
        _options = (options ?? EngineOptions.Default).Validate();
        _model = model;
        ModelConfig c = model.Config;
        _eos = [.. eosTokenIds];
        int contextLength = Math.Min(_options.ContextLength ?? c.ContextLength, c.ContextLength);
        int blockSize = _options.BlockSize;
        KvBudget = KvCacheBudget.Decide(
            PagedKvCache.BytesPerBlock(c, blockSize, _options.KvCacheDtype), blockSize, contextLength, _options.MaxNumSeqs, _options.KvCacheMemory, _options.KvCacheMemoryFraction,
            _options.KvCacheMemory is null ? AvailableMemory() : 0, maxBlocks: int.MaxValue / Math.Max(1, blockSize * c.KvHeads * c.HeadDim), _options.KvCacheDtype.Name());
        int blocks = KvBudget.Blocks;
        _cache = new PagedKvCache(c, blocks, blockSize, _options.KvCacheDtype);
        var core = new EngineCoreOptions
        {
            BlockSize = blockSize,
            BlockCount = blocks,
            BlockBytes = KvBudget.BytesPerBlock,
            ContextLength = contextLength,
            VocabSize = c.VocabSize,
            PoolFlag = "--kv-cache-memory",
            Scheduler = new SchedulerOptions { MaxNumSeqs = _options.MaxNumSeqs, MaxNumBatchedTokens = _options.MaxNumBatchedTokens, MaxStepMs = _options.MaxStepMs ?? EngineOptions.DefaultMaxStepMs },
            StepCostSeed = _options.StepCostSeed,
            PrefixCaching = _options.PrefixCaching,
            WorkerId = _options.WorkerId,
            EventHistory = _options.EventHistory,
        };
        // A tensor-parallel engine moves KV of every rank's heads (the whole model's layout); otherwise the pool itself.
        IKvTransferStore store = model.Group is { Size: > 1 } ? new TensorParallelKvStore(model, _cache) : _cache;
        _core = new EngineCore<Sampler>(this, core, static r => new Sampler(r.Sampling, r.PromptTokens, r.ResumedOutputTokens), store);
        _runStep = RunStep;
        _tokens = new int[_options.MaxNumBatchedTokens];
        _slices = new SequenceSlice[_options.MaxNumSeqs];
        _logits = new float[(long)_options.MaxNumSeqs * c.VocabSize];
        _sampled = new SampledRow[_options.MaxNumSeqs];
        _thread = new Thread(Loop) { IsBackground = true, Name = "dynamo-engine" };
        _thread.Start();
    }

    public string Name => "dynamo";

    public int BlockSize => _core.BlockSize;

    public int ContextLength => _core.ContextLength;

    /// <summary>Tokens one sequence may reach: the context length, or the whole KV pool if that is smaller.</summary>
    public int MaxSequenceLength => _core.MaxSequenceLength;

    public EngineOptions Options => _options;

    /// <summary>The KV pool's size and what decided it (logged by the worker at startup).</summary>
    public KvCacheBudget KvBudget { get; }

    public ModelConfig ModelConfig => _model.Config;

    public EngineStats Stats => _core.Stats;

    public KvEventLog? KvEvents => _core.KvEvents;

    /// <summary>
    /// Completes when this tensor-parallel engine lost a rank (the collectives failed; the exception names the rank):
    /// the step then running failed with it, and so will every later one. The worker stops when it completes.
    /// </summary>
    public Task<CollectiveException> GroupLost => _groupLost.Task;

    /// <summary>The error of the last step that failed (thrown into that step's streams).</summary>
    public Exception? Fault => _core.Fault;

    public IAsyncEnumerable<EngineOutput> SubmitAsync(EngineRequest request, CancellationToken cancellationToken = default) =>
        _core.Submit(request, cancellationToken);

    public bool Cancel(string requestId) => _core.Cancel(requestId);

    /// <inheritdoc/>
    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default) => _core.DumpKvAsync(cancellationToken);

    /// <summary>The shared request bookkeeping (tests: <see cref="EngineCore{TState}.InspectAsync{T}"/>, <see cref="EngineCore{TState}.BeforeStep"/>).</summary>
    internal EngineCore<Sampler> Core => _core;

    private void Loop()
    {
        using KernelThreads.ThreadOverride threads = _options.KernelThreads is int n ? KernelThreads.OverrideOnCurrentThread(n) : default;
        try
        {
            while (!_core.Stopping.IsCancellationRequested)
            {
                SchedulerStep? step = _core.NextStep();
                if (step is null)
                {
                    if (_model.Group is { Size: > 1 })
                    {
                        // The other ranks wait for rank 0's next plan; they hear that it is alive every second.
                        _core.WaitForCommands(1000);
                        KeepFollowersAlive();
                    }
                    else
                    {
                        _core.WaitForCommands(Timeout.Infinite);
                    }
                }
                else if (step.IsEmpty)
                {
                    _core.WaitForCommands(10);
                    KeepFollowersAlive();
                }
                else
                {
                    _core.RunStep(step, _runStep);
                }
            }

            _core.FailAll();
        }
        finally
        {
            // Disposal awaits this instead of blocking a thread-pool thread on Thread.Join.
            _exited.TrySetResult();
        }
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
        try
        {
            _model.Forward(_tokens.AsSpan(0, n), _slices.AsSpan(0, chunks.Count), _cache, _logits.AsSpan(0, rows * vocab));
            _lastLead = Environment.TickCount64;
        }
        catch (CollectiveException e)
        {
            _groupLost.TrySetResult(e);
            throw;
        }

        _core.Scheduler.Complete(step);
        int row = 0;
        foreach (ScheduledChunk c in chunks)
        {
            if (c.SamplesToken)
            {
                _sampled[row++] = new SampledRow { Live = LiveRequest<Sampler>.Of(c.Sequence) };
            }
        }

        SampleRows(row);
        for (int r = 0; r < row; r++)
        {
            ref SampledRow s = ref _sampled[r];
            if (s.Error is { } error)
            {
                // The step fails (its sequences with it): drop the rest of its rows' references before rethrowing.
                Array.Clear(_sampled, r, row - r);
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
            }

            SamplingParams p = s.Live!.Request.Sampling;
            _core.Emit(s.Live, s.Token, !p.IgnoreEos && _eos.Contains(s.Token), p.Logprobs ? [s.Logprob] : null, s.Top is null ? null : [s.Top]);
            s = default;
        }
    }

    /// <summary>
    /// Samples rows 0..count-1 of the step's logits (each sequence's own sampler, independent of the others), split over
    /// the kernel threads: drawing from a 32,000-token vocabulary takes a sequence about 0.1 ms (a top-p sort several
    /// times that), serial work that left the kernel workers idle once per row. The tokens are emitted afterwards in
    /// row order on the engine thread, so what a stream receives does not depend on the split.
    /// </summary>
    private unsafe void SampleRows(int count)
    {
        WorkerPool? pool = count > 1 ? KernelThreads.Pool : null;
        if (pool is null)
        {
            for (int r = 0; r < count; r++)
            {
                SampleRow(r);
            }

            return;
        }

        var handle = System.Runtime.InteropServices.GCHandle.Alloc(this);
        try
        {
            nint self = System.Runtime.InteropServices.GCHandle.ToIntPtr(handle);
            pool.Run(&SampleChunk, &self, count);
        }
        finally
        {
            handle.Free();
        }
    }

    private static unsafe void SampleChunk(void* context, int row) =>
        ((InferenceEngine)System.Runtime.InteropServices.GCHandle.FromIntPtr(*(nint*)context).Target!).SampleRow(row);

    /// <summary>Draws row <paramref name="row"/>'s token; an exception is kept for the engine thread to throw (a kernel worker must not).</summary>
    private void SampleRow(int row)
    {
        ref SampledRow s = ref _sampled[row];
        try
        {
            SamplingParams p = s.Live!.Request.Sampling;
            int vocab = _model.Config.VocabSize;
            s.Top = p.Logprobs && p.TopLogprobs > 0 ? new List<TokenLogprob>(p.TopLogprobs + 1) : null;
            s.Token = s.Live.State.Sample(_logits.AsSpan(row * vocab, vocab), s.Top, out s.Logprob);
        }
        catch (Exception e)
        {
            s.Error = e;
        }
    }

    /// <summary>One sampled row of a step: whose it is, and what its sampler drew.</summary>
    private struct SampledRow
    {
        public LiveRequest<Sampler>? Live;
        public int Token;
        public float Logprob;
        public List<TokenLogprob>? Top;
        public Exception? Error;
    }

    private void KeepFollowersAlive()
    {
        if (_model.Group is not { Size: > 1 } || Environment.TickCount64 - _lastLead < 1000 || _groupLost.Task.IsCompleted)
        {
            return;
        }

        try
        {
            _model.KeepAlive();
            _lastLead = Environment.TickCount64;
        }
        catch (CollectiveException e)
        {
            _groupLost.TrySetResult(e);
        }
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

    /// <summary>Stops the engine thread (live streams end with <see cref="ObjectDisposedException"/>), then disposes the model.</summary>
    public async ValueTask DisposeAsync()
    {
        if (await _core.StopAsync(() => _exited.Task).ConfigureAwait(false))
        {
            _model.Dispose();
        }
    }
}

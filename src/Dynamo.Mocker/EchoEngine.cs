using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Scheduling;

namespace Dynamo.Mocker;

/// <summary>
/// A model-free engine that generates the prompt back, one token per step: at most max_tokens of them,
/// finishing with <c>stop</c> once the whole prompt was echoed (or at one of its stop_token_ids) and
/// <c>length</c> when max_tokens or the context ran out first. Log-probabilities are 0 for the echoed token
/// (alternatives: the next ids at -100). It measures the cost of everything around an engine (frontend,
/// request plane, worker glue): <c>out=echo</c>, <c>bench frontend</c>.
/// <para>
/// It runs on the same <see cref="EngineCore{TState}"/> as the built-in engine and the mocker, so its requests
/// are checked, queued, batched, cancelled and counted as theirs are (a step costs
/// <see cref="EchoEngineOptions.TokenDelay"/>). It has no prefix cache (no KV events, an empty dump, no cached
/// tokens) and no KV to transfer (imports are refused, nothing is exported).
/// </para>
/// </summary>
public sealed class EchoEngine : IEngine
{
    private const float AlternativeLogprob = -100f;
    private readonly EchoEngineOptions _options;
    private readonly EngineCore<IReadOnlyList<int>> _core;
    private readonly Action<SchedulerStep> _echoStep;
    private readonly Task _loop;

    /// <summary>Creates an echo engine.</summary>
    public EchoEngine(EchoEngineOptions? options = null)
    {
        _options = (options ?? EchoEngineOptions.Default).Validate();
        var core = new EngineCoreOptions
        {
            BlockSize = _options.BlockSize,
            BlockCount = _options.BlockCount,
            ContextLength = _options.ContextLength,
            VocabSize = _options.VocabSize ?? int.MaxValue,
            PoolFlag = "--num-gpu-blocks",

            // Echoing costs nothing: one step takes every token the batch has.
            Scheduler = new SchedulerOptions { MaxNumSeqs = _options.MaxNumSeqs, MaxNumBatchedTokens = int.MaxValue },
            PrefixCaching = false,
        };

        // The per-request state is the prompt being echoed.
        _core = new EngineCore<IReadOnlyList<int>>(this, core, static r => r.PromptTokens, kvStore: null);
        _echoStep = EchoStep;
        _loop = Task.Run(LoopAsync);
    }

    /// <inheritdoc/>
    public string Name => "echo";

    /// <inheritdoc/>
    public int BlockSize => _core.BlockSize;

    /// <inheritdoc/>
    public int ContextLength => _core.ContextLength;

    /// <inheritdoc/>
    public EngineStats Stats => _core.Stats;

    /// <inheritdoc/>
    public KvEventLog? KvEvents => null;

    /// <inheritdoc/>
    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default) => _core.DumpKvAsync(cancellationToken);

    /// <inheritdoc/>
    public IAsyncEnumerable<EngineOutput> SubmitAsync(EngineRequest request, CancellationToken cancellationToken = default) =>
        _core.Submit(request, cancellationToken);

    /// <inheritdoc/>
    public bool Cancel(string requestId) => _core.Cancel(requestId);

    /// <summary>The shared request bookkeeping (tests: <see cref="EngineCore{TState}.InspectAsync{T}"/>, <see cref="EngineCore{TState}.BeforeStep"/>).</summary>
    internal EngineCore<IReadOnlyList<int>> Core => _core;

    private async Task LoopAsync()
    {
        CancellationToken stop = _core.Stopping;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                SchedulerStep? step = _core.NextStep();
                if (step is null)
                {
                    await _core.WaitForCommandsAsync().ConfigureAwait(false);
                    continue;
                }

                // An empty step (nothing fits) cannot happen with checked requests; waiting a little keeps it from spinning.
                TimeSpan delay = step.IsEmpty ? TimeSpan.FromMilliseconds(10) : _options.TokenDelay;
                if (delay > TimeSpan.Zero)
                {
                    await Task.Delay(delay, stop).ConfigureAwait(false);
                }

                if (!step.IsEmpty)
                {
                    _core.RunStep(step, _echoStep);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Disposed.
        }

        _core.FailAll();
    }

    private void EchoStep(SchedulerStep step)
    {
        _core.Scheduler.Complete(step);
        foreach (ScheduledChunk c in step.Chunks)
        {
            if (!c.SamplesToken)
            {
                continue;
            }

            var live = LiveRequest<IReadOnlyList<int>>.Of(c.Sequence);
            IReadOnlyList<int> prompt = live.State;
            SamplingParams p = live.Request.Sampling;
            // A migrated request carries the echo so far after its prompt: it goes on where that ended.
            int index = live.Request.ResumedOutputTokens + c.Sequence.OutputLength;
            int length = live.Request.OriginalPromptLength;
            int token = prompt[index];
            _core.Emit(live, token, stop: index == length - 1, p.Logprobs ? [0f] : null, p.Logprobs && p.TopLogprobs > 0 ? [Alternatives(token, p.TopLogprobs)] : null);
        }
    }

    private TokenLogprob[] Alternatives(int token, int count)
    {
        var list = new TokenLogprob[count];
        list[0] = new TokenLogprob(token, 0f);
        for (int k = 1; k < count; k++)
        {
            int other = token + k;
            if (_options.VocabSize is int vocab)
            {
                other %= vocab;
            }

            list[k] = new TokenLogprob(other, AlternativeLogprob);
        }

        return list;
    }

    /// <summary>Stops the loop; live streams end with <see cref="ObjectDisposedException"/>.</summary>
    public async ValueTask DisposeAsync() => await _core.StopAsync(() => _loop).ConfigureAwait(false);
}

using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;

namespace Dynamo.Mocker;

/// <summary>
/// A model-free engine that generates the prompt back, one token per step: at most max_tokens of them,
/// finishing with "stop" once the whole prompt was echoed and "length" when max_tokens ran out first.
/// Log-probabilities are 0 for the echoed token (alternatives: the next ids at -100). It measures the
/// cost of everything around an engine (frontend, request plane, worker glue): <c>out=echo</c>.
/// </summary>
public sealed class EchoEngine : IEngine
{
    private const float AlternativeLogprob = -100f;
    private readonly EchoEngineOptions _options;
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _live = new(StringComparer.Ordinal);
    private long _generated;
    private long _promptTokens;
    private long _finished;
    private long _steps;

    /// <summary>Creates an echo engine.</summary>
    public EchoEngine(EchoEngineOptions? options = null)
    {
        _options = (options ?? EchoEngineOptions.Default).Validate();
    }

    /// <inheritdoc/>
    public string Name => "echo";

    /// <inheritdoc/>
    public int BlockSize => _options.BlockSize;

    /// <inheritdoc/>
    public int ContextLength => _options.ContextLength;

    /// <inheritdoc/>
    public EngineStats Stats => new()
    {
        RunningRequests = _live.Count,
        BlockSize = _options.BlockSize,
        PromptTokens = Interlocked.Read(ref _promptTokens),
        GeneratedTokens = Interlocked.Read(ref _generated),
        RequestsFinished = Interlocked.Read(ref _finished),
        Steps = Interlocked.Read(ref _steps),
    };

    /// <inheritdoc/>
    public KvEventLog? KvEvents => null;

    /// <inheritdoc/>
    public Task<KvEventDump> DumpKvAsync(CancellationToken cancellationToken = default) => Task.FromResult(new KvEventDump(0, 0, []));

    /// <inheritdoc/>
    public IAsyncEnumerable<EngineOutput> SubmitAsync(EngineRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.PromptTokens.Count == 0)
        {
            throw new ArgumentException("the prompt must have at least one token", nameof(request));
        }

        if (request.PromptTokens.Count > _options.ContextLength)
        {
            throw new ArgumentException($"prompt of {request.PromptTokens.Count} tokens exceeds the context length {_options.ContextLength}", nameof(request));
        }

        if (_options.VocabSize is int vocab && request.PromptTokens.Any(t => t < 0 || t >= vocab))
        {
            throw new ArgumentException($"token ids must be in 0..{vocab - 1}", nameof(request));
        }

        request.Sampling.Validate();
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (!_live.TryAdd(request.Id, cancel))
        {
            cancel.Dispose();
            throw new ArgumentException($"request id '{request.Id}' is already live", nameof(request));
        }

        Interlocked.Add(ref _promptTokens, request.PromptTokens.Count);
        return RunAsync(request, cancel, CancellationToken.None);
    }

    /// <inheritdoc/>
    public bool Cancel(string requestId)
    {
        if (!_live.TryGetValue(requestId, out CancellationTokenSource? cancel))
        {
            return false;
        }

        try
        {
            cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
            return false;
        }

        return true;
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        foreach (CancellationTokenSource cancel in _live.Values)
        {
            try
            {
                cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }

        return ValueTask.CompletedTask;
    }

    private async IAsyncEnumerable<EngineOutput> RunAsync(EngineRequest request, CancellationTokenSource cancel, [EnumeratorCancellation] CancellationToken enumeratorToken = default)
    {
        using CancellationTokenRegistration link = enumeratorToken.Register(static c => ((CancellationTokenSource)c!).Cancel(), cancel);
        IReadOnlyList<int> prompt = request.PromptTokens;
        SamplingParams sampling = request.Sampling;
        int count = Math.Min(prompt.Count, sampling.MaxTokens);
        FinishReason finish = count == prompt.Count ? FinishReason.Stop : FinishReason.Length;
        try
        {
            for (int i = 0; i < count; i++)
            {
                bool cancelled = false;
                if (_options.TokenDelay > TimeSpan.Zero)
                {
                    try
                    {
                        await Task.Delay(_options.TokenDelay, cancel.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        cancelled = true;
                    }
                }
                else
                {
                    await Task.Yield();
                    cancelled = cancel.IsCancellationRequested;
                }

                if (cancelled)
                {
                    yield return new EngineOutput { TokenIds = [], FinishReason = FinishReason.Cancelled, PromptTokens = prompt.Count };
                    yield break;
                }

                int token = prompt[i];
                Interlocked.Increment(ref _generated);
                Interlocked.Increment(ref _steps);
                bool last = i == count - 1;
                yield return new EngineOutput
                {
                    TokenIds = [token],
                    Logprobs = sampling.Logprobs ? [0f] : null,
                    TopLogprobs = sampling.Logprobs && sampling.TopLogprobs > 0 ? [Alternatives(token, sampling.TopLogprobs)] : null,
                    FinishReason = last ? finish : null,
                    PromptTokens = prompt.Count,
                };
            }
        }
        finally
        {
            _live.TryRemove(request.Id, out _);
            cancel.Dispose();
            Interlocked.Increment(ref _finished);
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
}

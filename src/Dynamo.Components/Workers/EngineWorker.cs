using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Components.KvTransfer;
using Dynamo.Components.Tracing;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Tracing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Components.Workers;

/// <summary>
/// Serves an <see cref="IEngine"/> on the runtime: the <c>generate</c> endpoint (worker protocol v1, see
/// Protocols/Worker/README.md), its KV events on <c>dyn.{ns}.{comp}.events.kv_events</c> and its load every
/// second on <c>dyn.{ns}.{comp}.events.load_metrics</c>, and the <c>kv_dump</c> endpoint beside
/// <c>generate</c> that answers with one message, the engine's <see cref="KvEventDump"/> JSON (what a
/// router loads to resync, see Kv/README.md). A worker may serve several engine replicas (data-parallel ranks,
/// --dp-size): each rank's KV events and load carry its <c>dp_rank</c>, the dump endpoint answers for the rank a
/// request names, and a generate request goes to the rank its <c>dp_rank</c> names (the KV router's choice), or to
/// the least loaded rank when it names none. Bad payloads are answered with an
/// <c>invalid_request</c> error; the worker keeps serving. A KV event that cannot be published (the event
/// plane down) or that the buffer had to drop is counted and skipped: the next one goes out, and routers
/// heal the gap from the dump.
/// </summary>
public sealed partial class EngineWorker : IAsyncDisposable
{
    /// <summary>The event-plane topic of KV events.</summary>
    public const string KvEventsTopic = "kv_events";

    /// <summary>The event-plane topic of load metrics.</summary>
    public const string LoadMetricsTopic = "load_metrics";

    /// <summary>The endpoint, in the worker's component, that answers with the KV cache dump.</summary>
    public const string KvDumpEndpoint = "kv_dump";

    /// <summary>
    /// The error code of a request refused because <see cref="EngineWorkerOptions.MaxWaitingRequests"/> requests
    /// wait already: nothing of it ran, another worker may take it.
    /// </summary>
    public const string OverloadedCode = "worker_overloaded";

    private readonly DistributedRuntime _runtime;
    private readonly IEngine[] _engines;
    private readonly int[] _rankActive;
    private readonly ILogger _logger;
    private readonly EngineWorkerOptions _options;
    private readonly Channel<KvEvent> _kvEvents;
    private readonly CancellationTokenSource _stop = new();
    private ServedEndpoint? _served;
    private ServedEndpoint? _dumpServed;
    private long _requestsTotal;
    private long _requestErrors;
    private long _kvEventsPublished;
    private long _kvEventsDropped;
    private long _publishFailures;
    private int _inFlight;
    private int _waiting;
    private long _refused;
    private Task _publishers = Task.CompletedTask;
    private readonly ConcurrentDictionary<string, Lazy<Task<EndpointClient>>> _prefillClients = new(StringComparer.Ordinal);

    private EngineWorker(DistributedRuntime runtime, IEngine[] engines, EndpointAddress address, EngineWorkerOptions options, ILogger logger)
    {
        _runtime = runtime;
        _engines = engines;
        _rankActive = new int[engines.Length];
        Address = address;
        _options = options;
        _logger = logger;
        _kvEvents = Channel.CreateBounded<KvEvent>(
            new BoundedChannelOptions(options.KvEventBufferCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.DropOldest },
            _ => Interlocked.Increment(ref _kvEventsDropped));
    }

    /// <summary>The served endpoint.</summary>
    public EndpointAddress Address { get; }

    /// <summary>This worker's instance id.</summary>
    public long InstanceId => _runtime.InstanceId;

    /// <summary>Requests received on the generate endpoint so far.</summary>
    public long RequestsTotal => Interlocked.Read(ref _requestsTotal);

    /// <summary>Requests that ended with an error (bad payload, engine refusal).</summary>
    public long RequestErrors => Interlocked.Read(ref _requestErrors);

    /// <summary>Requests being served now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Requests received that have not produced anything yet (bounded by <see cref="EngineWorkerOptions.MaxWaitingRequests"/>).</summary>
    public int WaitingRequests => Volatile.Read(ref _waiting);

    /// <summary>Requests refused with <see cref="OverloadedCode"/> so far.</summary>
    public long RequestsRefused => Interlocked.Read(ref _refused);

    /// <summary>KV events published on the event plane so far.</summary>
    public long KvEventsPublished => Interlocked.Read(ref _kvEventsPublished);

    /// <summary>KV events dropped because the buffer was full (the event plane slower than the engine).</summary>
    public long KvEventsDropped => Interlocked.Read(ref _kvEventsDropped);

    /// <summary>Publishes (KV events and load reports) that failed.</summary>
    public long PublishFailures => Interlocked.Read(ref _publishFailures);

    /// <summary>The engine's counters (the sum over its data-parallel ranks when it has several).</summary>
    public EngineStats Stats => _engines.Length == 1 ? _engines[0].Stats : EngineStats.Sum(_engines.Select(e => e.Stats));

    /// <summary>Engine replicas (data-parallel ranks) this worker serves; 1 without --dp-size.</summary>
    public int DataParallelSize => _engines.Length;

    /// <summary>Whether its engines are data-parallel ranks (several, or <see cref="EngineWorkerOptions.DataParallel"/>): they are listed in discovery.</summary>
    public bool IsDataParallel => _engines.Length > 1 || _options.DataParallel || _options.FirstDpRank > 0;

    /// <summary>The data-parallel rank of the first engine (<see cref="EngineWorkerOptions.FirstDpRank"/>).</summary>
    public int FirstDpRank => _options.FirstDpRank;

    /// <summary>Each data-parallel rank's counters, from <see cref="FirstDpRank"/> on.</summary>
    public IReadOnlyList<EngineStats> RankStats => [.. _engines.Select(e => e.Stats)];

    /// <summary>Remote prefills and fallbacks (as a decode worker), prefills served and KV pushed (as a prefill worker).</summary>
    public WorkerDisaggregationStats Disaggregation { get; } = new();

    internal EngineWorkerOptions Options => _options;

    internal ILogger Logger => _logger;

    internal int BlockSize => _engines[0].BlockSize;

    /// <summary>The client of a prefill endpoint (one per endpoint, created on first use, following discovery).</summary>
    internal Task<EndpointClient> PrefillClientAsync(string endpoint, CancellationToken cancellationToken)
    {
        EndpointAddress address;
        try
        {
            address = EndpointAddress.Parse(endpoint);
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"remote_prefill.endpoint '{endpoint}' is not an endpoint: {e.Message}", e);
        }

        return _prefillClients.GetOrAdd(address.ToString(), _ => new Lazy<Task<EndpointClient>>(() => _runtime.CreateClientAsync(address))).Value.WaitAsync(cancellationToken);
    }

    /// <summary>Starts serving <paramref name="engine"/> at <paramref name="address"/>.</summary>
    public static async Task<EngineWorker> StartAsync(DistributedRuntime runtime, IEngine engine, EndpointAddress address, ILogger? logger = null, CancellationToken cancellationToken = default) =>
        await StartAsync(runtime, engine, address, EngineWorkerOptions.Default, logger, cancellationToken).ConfigureAwait(false);

    /// <summary>Starts serving <paramref name="engine"/> at <paramref name="address"/> with <paramref name="options"/>.</summary>
    public static Task<EngineWorker> StartAsync(DistributedRuntime runtime, IEngine engine, EndpointAddress address, EngineWorkerOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return StartAsync(runtime, [engine], address, options, logger, cancellationToken);
    }

    /// <summary>
    /// Starts serving <paramref name="ranks"/>, engine replicas of one model (data-parallel ranks 0..N-1, each its own
    /// routing target), at <paramref name="address"/> as one worker instance.
    /// </summary>
    public static async Task<EngineWorker> StartAsync(DistributedRuntime runtime, IReadOnlyList<IEngine> ranks, EndpointAddress address, EngineWorkerOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(ranks);
        ArgumentNullException.ThrowIfNull(options);
        if (ranks.Count == 0 || ranks.Any(e => e is null))
        {
            throw new ArgumentException("a worker serves at least one engine, and no null one", nameof(ranks));
        }

        if (ranks.Any(e => e.BlockSize != ranks[0].BlockSize || e.ContextLength != ranks[0].ContextLength))
        {
            throw new ArgumentException("the data-parallel ranks of a worker must have one block size and one context length", nameof(ranks));
        }

        var worker = new EngineWorker(runtime, [.. ranks], address, options.Validate(), logger ?? NullLogger.Instance);
        for (int i = 0; i < ranks.Count; i++)
        {
            if (ranks[i].KvEvents is { } log)
            {
                int dpRank = options.FirstDpRank + i;
                log.Published += e => worker._kvEvents.Writer.TryWrite(e.DpRank == dpRank ? e : e with { DpRank = dpRank });
            }
        }

        worker._publishers = Task.WhenAll(
            Task.Run(() => worker.PublishKvEventsAsync(worker._stop.Token), CancellationToken.None),
            Task.Run(() => worker.PublishLoadAsync(worker._stop.Token), CancellationToken.None));
        // The dump endpoint first: a router that sees the worker in discovery can resync at once.
        IReadOnlyList<int>? dpRanks = worker.IsDataParallel ? [.. Enumerable.Range(options.FirstDpRank, ranks.Count)] : null;
        worker._dumpServed = await runtime.ServeEndpointAsync(DumpAddress(address), worker.HandleDumpAsync, dpRanks, cancellationToken).ConfigureAwait(false);
        worker._served = await runtime.ServeEndpointAsync(address, TracedHandler.Wrap(DynamoTracing.Worker, DynamoTracing.Spans.Worker, worker.HandleAsync), dpRanks, cancellationToken).ConfigureAwait(false);
        return worker;
    }

    /// <summary>The <see cref="KvDumpEndpoint"/> beside <paramref name="generate"/> (same namespace and component).</summary>
    public static EndpointAddress DumpAddress(EndpointAddress generate)
    {
        ArgumentNullException.ThrowIfNull(generate);
        return new EndpointAddress(generate.Namespace, generate.Component, KvDumpEndpoint);
    }

    /// <summary>Parses a generate payload into an engine request; <see cref="EndpointException"/> (invalid_request) when it is not one.</summary>
    public static EngineRequest ParseRequest(string requestId, ReadOnlySpan<byte> payload) => ToEngineRequest(requestId, ParseWire(payload));

    /// <summary>Parses and checks a generate payload; <see cref="EndpointException"/> (invalid_request, unsupported_version) when it is not one.</summary>
    private static GenerateRequest ParseWire(ReadOnlySpan<byte> payload)
    {
        GenerateRequest? request;
        try
        {
            request = JsonSerializer.Deserialize(payload, WorkerJsonContext.Default.GenerateRequest);
        }
        catch (JsonException e)
        {
            throw new EndpointException("invalid_request", $"malformed generate request: {e.Message}");
        }

        if (request is null)
        {
            throw new EndpointException("invalid_request", "malformed generate request: null");
        }

        if (request.Version != GenerateRequest.CurrentVersion)
        {
            throw new EndpointException("unsupported_version", $"generate request version {request.Version} is not supported (this worker speaks {GenerateRequest.CurrentVersion})");
        }

        if (request.TokenIds is not { Count: > 0 })
        {
            throw new EndpointException("invalid_request", "token_ids must be a non-empty array");
        }

        return request;
    }

    private static EngineRequest ToEngineRequest(string requestId, GenerateRequest request)
    {
        IReadOnlyList<int> tokens = request.TokenIds!;
        GenerateSampling s = request.Sampling ?? new GenerateSampling();
        SamplingParams d = SamplingParams.Default;
        SamplingParams sampling = new SamplingParams
        {
            Temperature = s.Temperature ?? d.Temperature,
            TopK = s.TopK ?? d.TopK,
            TopP = s.TopP ?? d.TopP,
            MinP = s.MinP ?? d.MinP,
            Seed = s.Seed,
            RepetitionPenalty = s.RepetitionPenalty ?? d.RepetitionPenalty,
            FrequencyPenalty = s.FrequencyPenalty ?? d.FrequencyPenalty,
            PresencePenalty = s.PresencePenalty ?? d.PresencePenalty,
            MaxTokens = s.MaxTokens ?? d.MaxTokens,
            IgnoreEos = s.IgnoreEos ?? false,
            StopTokenIds = s.StopTokenIds ?? [],
            Logprobs = s.Logprobs ?? false,
            TopLogprobs = s.TopLogprobs ?? 0,
        };
        try
        {
            sampling.Validate();
        }
        catch (ArgumentException e)
        {
            throw new EndpointException("invalid_request", e.Message);
        }

        int resumed = request.ResumedOutputTokens ?? 0;
        if (resumed < 0 || resumed >= tokens.Count)
        {
            throw new EndpointException("invalid_request", $"resumed_output_tokens: {resumed} must be at least 0 and less than the {tokens.Count} token_ids");
        }

        return new EngineRequest(request.RequestId is { Length: > 0 } id ? id : requestId, tokens, sampling) { ResumedOutputTokens = resumed };
    }

    /// <summary>An engine output as a generate response (<paramref name="prefill"/> on the last one of a disaggregated request).</summary>
    public static byte[] SerializeResponse(EngineOutput output, PrefillReport? prefill = null) => JsonSerializer.SerializeToUtf8Bytes(new GenerateResponse
    {
        TokenIds = output.TokenIds,
        Logprobs = output.Logprobs,
        TopLogprobs = output.TopLogprobs?.Select(l => (IReadOnlyList<GenerateTopLogprob>)l.Select(t => new GenerateTopLogprob(t.TokenId, t.Logprob)).ToArray()).ToArray(),
        FinishReason = output.FinishReason?.ToWire(),
        PromptTokens = output.FinishReason is null ? null : output.PromptTokens,
        CachedTokens = output.FinishReason is null ? null : output.CachedTokens,
        Prefill = prefill,
    }, WorkerJsonContext.Default.GenerateResponse);

    /// <summary>
    /// Graceful drain (SIGTERM): withdraws the worker's model card and marks its instance draining, so that no
    /// router chooses it any more (its endpoint keeps serving: a request routed just before still runs), then
    /// waits for its requests in flight to end, at most <paramref name="timeout"/>. Returns how many are still running;
    /// disposing the worker then stops them, and their frontends migrate them to other workers.
    /// </summary>
    public async Task<int> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        Log.Draining(_logger, EndpointAddress.FormatId(InstanceId), InFlight, timeout.TotalSeconds);
        try
        {
            await _runtime.WithdrawModelCardAsync(Address, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            // Discovery unreachable: the card's lease expires with this process; drain what runs anyway.
            Log.WithdrawFailed(_logger, EndpointAddress.FormatId(InstanceId), e.Message);
        }

        int left = _served is null ? InFlight : (int)await _served.DrainAsync(() => InFlight, timeout, cancellationToken).ConfigureAwait(false);
        Log.Drained(_logger, EndpointAddress.FormatId(InstanceId), left);
        return left;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (_served is not null)
        {
            await _served.DisposeAsync().ConfigureAwait(false);
        }

        if (_dumpServed is not null)
        {
            await _dumpServed.DisposeAsync().ConfigureAwait(false);
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        _kvEvents.Writer.TryComplete();
        await _publishers.ConfigureAwait(false);
        foreach (Lazy<Task<EndpointClient>> client in _prefillClients.Values)
        {
            try
            {
                await (await client.Value.ConfigureAwait(false)).DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A client that failed to start has nothing to stop.
            }
        }
        _stop.Dispose();
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> HandleAsync(RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _requestsTotal);

        // Counted before checked: of requests arriving together, only those within the bound pass.
        if (Interlocked.Increment(ref _waiting) > _options.MaxWaitingRequests)
        {
            Interlocked.Decrement(ref _waiting);
            Interlocked.Increment(ref _refused);
            throw new EndpointException(OverloadedCode,
                $"worker {EndpointAddress.FormatId(InstanceId)} has {_options.MaxWaitingRequests} requests waiting already (--max-waiting-requests)");
        }

        Interlocked.Increment(ref _inFlight);
        bool failed = true;
        bool waiting = true;
        try
        {
            await foreach (ReadOnlyMemory<byte> response in GenerateAsync(context, payload, cancellationToken).ConfigureAwait(false))
            {
                if (waiting)
                {
                    waiting = false;
                    Interlocked.Decrement(ref _waiting);
                }

                yield return response;
            }

            failed = false;
        }
        finally
        {
            if (waiting)
            {
                Interlocked.Decrement(ref _waiting);
            }

            Interlocked.Decrement(ref _inFlight);
            if (failed && !cancellationToken.IsCancellationRequested)
            {
                Interlocked.Increment(ref _requestErrors);
            }
        }
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> HandleDumpAsync(RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        int rank;
        try
        {
            rank = KvDumpRequest.Parse(payload.Span).DpRank;
            if (payload.IsEmpty)
            {
                rank = _options.FirstDpRank;
            }
        }
        catch (FormatException e)
        {
            throw new EndpointException("invalid_request", e.Message);
        }

        KvEventDump dump = await _engines[IndexOf(rank)].DumpKvAsync(cancellationToken).ConfigureAwait(false);
        if (dump.WorkerId != InstanceId || dump.DpRank != rank)
        {
            dump = dump with { WorkerId = InstanceId, DpRank = rank };
        }
        yield return KvEventJson.SerializeDumpToUtf8(dump);
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> GenerateAsync(RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        GenerateRequest wire = ParseWire(payload.Span);
        EngineRequest request = ToEngineRequest(context.RequestId, wire);
        int index = wire.DpRank is int chosen ? IndexOf(chosen) : LeastLoaded();
        Activity? span = TracedHandler.CurrentOf(DynamoTracing.Worker);
        var served = new ServedRequest(request.Id, _options.FirstDpRank + index, DynamoTracing.LogTraceId(span?.Context ?? context.TraceParent), Stopwatch.GetTimestamp());
        if (span is not null)
        {
            // The engine records its phases under this span, and a prefill worker its KV push (after responses, when the span is no longer current).
            request = request with { TraceParent = span.Context };
            span.SetTag(DynamoTracing.Attributes.WorkerId, EndpointAddress.FormatId(InstanceId));
            span.SetTag(DynamoTracing.Attributes.DpRank, _options.FirstDpRank + index);
            span.SetTag(DynamoTracing.Attributes.PromptTokens, request.OriginalPromptLength);
        }

        Interlocked.Increment(ref _rankActive[index]);
        try
        {
            await foreach (ReadOnlyMemory<byte> response in GenerateOnAsync(_engines[index], wire, request, served, cancellationToken).ConfigureAwait(false))
            {
                yield return response;
            }
        }
        finally
        {
            Interlocked.Decrement(ref _rankActive[index]);
        }
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> GenerateOnAsync(IEngine engine, GenerateRequest wire, EngineRequest request, ServedRequest served, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (wire.KvTransfer is { } target)
        {
            await foreach (ReadOnlyMemory<byte> response in PrefillForAsync(engine, request, target, served, cancellationToken).ConfigureAwait(false))
            {
                yield return response;
            }

            yield break;
        }

        RemotePrefillLeg? leg = null;
        PrefillReport? local = null;
        if (wire.RemotePrefill is { } remote)
        {
            if (request.PromptTokens.Count < 2)
            {
                local = new PrefillReport { Remote = false, PrefillInstanceId = remote.InstanceId, FallbackReason = PrefillReasons.ShortPrompt };
            }
            else
            {
                (request, leg) = RemotePrefillLeg.Start(this, remote, request, cancellationToken);
            }
        }

        int completion = 0;
        try
        {
            IAsyncEnumerator<EngineOutput> outputs;
            try
            {
                outputs = engine.SubmitAsync(request, cancellationToken).GetAsyncEnumerator(cancellationToken);
            }
            catch (ArgumentException e)
            {
                throw new EndpointException("invalid_request", e.Message);
            }

            try
            {
                while (true)
                {
                    bool more;
                    try
                    {
                        more = await outputs.MoveNextAsync().ConfigureAwait(false);
                    }
                    catch (ArgumentException e)
                    {
                        // The engine's own checks (context length, vocabulary, KV pool size): the client's mistake.
                        throw new EndpointException("invalid_request", e.Message);
                    }

                    if (!more)
                    {
                        yield break;
                    }

                    EngineOutput output = outputs.Current;
                    completion += output.TokenIds.Count;
                    PrefillReport? report = output.FinishReason is null ? null : leg is null ? local : await leg.Report.ConfigureAwait(false);
                    if (output.FinishReason is { } finish)
                    {
                        LogServed(served, output, finish, completion, report);
                    }

                    yield return SerializeResponse(output, report);
                }
            }
            finally
            {
                await outputs.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            if (leg is not null)
            {
                await leg.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// A prefill worker's side of a remote prefill: the engine computes the prompt's KV (its one sampled token is
    /// not used), the KV is pushed to the decode worker's transfer port, then the last response says what the
    /// push cost. While the engine works, an empty response every <see cref="EngineWorkerOptions.PrefillProgressInterval"/>
    /// tells the decode worker this one is alive, as long as the engine completes steps (an engine stuck in one step
    /// longer than the decode worker's stall timeout is a stall). A tensor-parallel engine pushes the KV itself, each rank its
    /// own heads as one part (<see cref="EngineRequest.PushKvTo"/>), and says how in <see cref="EngineOutput.KvPushed"/>.
    /// A push that fails (any part of it) ends the request with <c>kv_transfer_failed</c>.
    /// </summary>
    private async IAsyncEnumerable<ReadOnlyMemory<byte>> PrefillForAsync(IEngine engine, EngineRequest request, KvTransferTarget target, ServedRequest served, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (target.ModelFingerprint is { } theirs && _options.ModelFingerprint is { } ours && theirs != ours)
        {
            Log.ModelMismatch(_logger, request.Id, EndpointAddress.FormatId(InstanceId), ours, EndpointAddress.FormatId(target.DecodeInstanceId), theirs);
            throw new EndpointException("model_mismatch",
                $"prefill worker {EndpointAddress.FormatId(InstanceId)} serves other weights (fingerprint {ours}) than decode worker {EndpointAddress.FormatId(target.DecodeInstanceId)} ({theirs})");
        }

        request = request with { ExportKv = true, PushKvTo = new KvPushTarget(target.Address, target.TransferId), Sampling = request.Sampling with { MaxTokens = 1 } };
        IAsyncEnumerator<EngineOutput> outputs;
        try
        {
            outputs = engine.SubmitAsync(request, cancellationToken).GetAsyncEnumerator(cancellationToken);
        }
        catch (ArgumentException e)
        {
            throw new EndpointException("invalid_request", e.Message);
        }

        EngineOutput? last = null;
        long steps = engine.Stats.Steps;
        try
        {
            while (last is null)
            {
                Task<bool> next = outputs.MoveNextAsync().AsTask();
                while (!next.IsCompleted)
                {
                    if (await Task.WhenAny(next, Task.Delay(_options.PrefillProgressInterval, cancellationToken)).ConfigureAwait(false) != next)
                    {
                        cancellationToken.ThrowIfCancellationRequested();

                        // Only an engine that moves says it is alive: one stuck in a step lets the decode worker give up.
                        long now = engine.Stats.Steps;
                        if (now != steps)
                        {
                            steps = now;
                            yield return ProgressFrame;
                        }
                    }
                }

                bool more;
                try
                {
                    more = await next.ConfigureAwait(false);
                }
                catch (ArgumentException e)
                {
                    throw new EndpointException("invalid_request", e.Message);
                }

                if (!more)
                {
                    throw new EndpointException("kv_transfer_failed", "the engine ended the prefill without a finish reason");
                }

                if (outputs.Current.FinishReason is not null)
                {
                    last = outputs.Current;
                }
            }
        }
        finally
        {
            await outputs.DisposeAsync().ConfigureAwait(false);
        }

        if (last.FinishReason == FinishReason.Cancelled)
        {
            yield return SerializeResponse(last);
            yield break;
        }

        if (last.KvPushed is { } pushed)
        {
            // A tensor-parallel engine: each rank pushed its own heads, one part each, and rank 0 heard from every one.
            if (pushed.Failure is { } failure)
            {
                Disaggregation.CountSendFailure();
                Log.PushFailed(_logger, request.Id, EndpointAddress.FormatId(target.DecodeInstanceId), target.Address, failure);
                throw new EndpointException("kv_transfer_failed", $"pushing the KV to decode worker {EndpointAddress.FormatId(target.DecodeInstanceId)} at {target.Address} failed: {failure}");
            }

            Disaggregation.CountServed(pushed.Bytes, pushed.Elapsed, pushed.PartBytes.Count);
            LogPrefilled(served, target, last.PromptTokens, pushed.Bytes, pushed.Elapsed);
            DateTime now = DateTime.UtcNow;
            Activity? push = request.TraceParent == default ? null
                : DynamoTracing.StartPast(DynamoTracing.Worker, DynamoTracing.Spans.KvTransfer, request.TraceParent, now - pushed.Elapsed, now);
            TagTransfer(push, target, pushed.Bytes, last.PromptTokens);
            DynamoTracing.EndPast(push);
            yield return SerializeResponse(last, new PrefillReport
            {
                Remote = true,
                PrefillInstanceId = InstanceId,
                TransferMs = pushed.Elapsed.TotalMilliseconds,
                TransferBytes = pushed.Bytes,
                TransferTokens = last.PromptTokens,
                TransferPartBytes = pushed.PartBytes,
            });
            yield break;
        }

        KvTransferPayload kv = last.Kv ?? throw new EndpointException("kv_transfer_failed", $"the {engine.Name} engine exported no KV");
        KvTransferSendResult sent;
        using Activity? transfer = request.TraceParent == default ? null
            : DynamoTracing.Worker.StartActivity(DynamoTracing.Spans.KvTransfer, ActivityKind.Client, request.TraceParent);
        try
        {
            sent = await _options.KvTransferClient.SendAsync(target.Address, target.TransferId, kv, cancellationToken).ConfigureAwait(false);
            TagTransfer(transfer, target, sent.Bytes, kv.Layout.TokenCount);
        }
        catch (KvTransferException e)
        {
            transfer?.SetStatus(ActivityStatusCode.Error, e.Message);
            Disaggregation.CountSendFailure();
            Log.PushFailed(_logger, request.Id, EndpointAddress.FormatId(target.DecodeInstanceId), target.Address, e.Message);
            throw new EndpointException("kv_transfer_failed", $"pushing the KV to decode worker {EndpointAddress.FormatId(target.DecodeInstanceId)} at {target.Address} failed: {e.Message}");
        }

        Disaggregation.CountServed(sent.Bytes, sent.Elapsed, parts: 1);
        LogPrefilled(served, target, kv.Layout.TokenCount, sent.Bytes, sent.Elapsed);
        yield return SerializeResponse(last, new PrefillReport
        {
            Remote = true,
            PrefillInstanceId = InstanceId,
            TransferMs = sent.Elapsed.TotalMilliseconds,
            TransferBytes = sent.Bytes,
            TransferTokens = kv.Layout.TokenCount,
        });
    }

    /// <summary>The request's line when it ends: what it cost, where its prefill ran, and its trace id (the frontend's line names the same).</summary>
    private void LogServed(ServedRequest served, EngineOutput last, FinishReason finish, int completion, PrefillReport? prefill)
    {
        if (!_logger.IsEnabled(LogLevel.Information))
        {
            return;
        }

        string where = prefill switch
        {
            null => "local",
            { Remote: true } => $"remote:{EndpointAddress.FormatId(prefill.PrefillInstanceId)}",
            _ => $"local:{prefill.FallbackReason}",
        };
        Log.RequestServed(_logger, served.Id, EndpointAddress.FormatId(InstanceId), served.DpRank, last.PromptTokens, last.CachedTokens, completion, finish.ToWire(), where,
            Math.Round(Stopwatch.GetElapsedTime(served.Start).TotalMilliseconds, 1), served.TraceId);
    }

    /// <summary>A prefill worker's line for a request it prefilled for a decode worker, with the trace id.</summary>
    private void LogPrefilled(ServedRequest served, KvTransferTarget target, int tokens, long bytes, TimeSpan transfer) =>
        Log.RequestPrefilled(_logger, served.Id, EndpointAddress.FormatId(InstanceId), EndpointAddress.FormatId(target.DecodeInstanceId), tokens, bytes,
            Math.Round(transfer.TotalMilliseconds, 1), Math.Round(Stopwatch.GetElapsedTime(served.Start).TotalMilliseconds, 1), served.TraceId);

    private static void TagTransfer(Activity? span, KvTransferTarget target, long bytes, int tokens)
    {
        span?.SetTag(DynamoTracing.Attributes.DecodeWorkerId, EndpointAddress.FormatId(target.DecodeInstanceId));
        span?.SetTag(DynamoTracing.Attributes.TransferBytes, bytes);
        span?.SetTag(DynamoTracing.Attributes.TransferTokens, tokens);
    }

    /// <summary>The engine index of data-parallel rank <paramref name="rank"/>; invalid_request naming this worker's ranks when it has not that one.</summary>
    private int IndexOf(int rank) => (uint)(rank - _options.FirstDpRank) < (uint)_engines.Length ? rank - _options.FirstDpRank
        : throw new EndpointException("invalid_request",
            $"dp_rank {rank}: worker {EndpointAddress.FormatId(InstanceId)} has data-parallel ranks {_options.FirstDpRank}..{_options.FirstDpRank + _engines.Length - 1}");

    /// <summary>The engine index with the fewest requests in flight here (the lowest on a tie): for a request that names no rank.</summary>
    private int LeastLoaded()
    {
        int best = 0;
        for (int rank = 1; rank < _rankActive.Length; rank++)
        {
            if (Volatile.Read(ref _rankActive[rank]) < Volatile.Read(ref _rankActive[best]))
            {
                best = rank;
            }
        }

        return best;
    }

    /// <summary>An empty response: a prefill worker's "still working".</summary>
    private static readonly byte[] ProgressFrame = JsonSerializer.SerializeToUtf8Bytes(new GenerateResponse { TokenIds = [] }, WorkerJsonContext.Default.GenerateResponse);

    private async Task PublishKvEventsAsync(CancellationToken cancellationToken)
    {
        string subject = Address.EventSubject(KvEventsTopic);
        try
        {
            await foreach (KvEvent e in _kvEvents.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                // Consumers know a worker by its instance id, whatever id the engine was built with.
                KvEvent published = e.WorkerId == InstanceId ? e : e with { WorkerId = InstanceId };
                try
                {
                    await _runtime.Events.PublishAsync(subject, KvEventJson.SerializeToUtf8(published), cancellationToken).ConfigureAwait(false);
                    Interlocked.Increment(ref _kvEventsPublished);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    // One lost event is a gap routers heal from the dump; the next event goes out.
                    Interlocked.Increment(ref _publishFailures);
                    Log.PublishFailed(_logger, subject, ex);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task PublishLoadAsync(CancellationToken cancellationToken)
    {
        string subject = Address.EventSubject(LoadMetricsTopic);
        using var timer = new PeriodicTimer(_options.LoadMetricsInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                // One report per data-parallel rank: each is its own routing target.
                for (int i = 0; i < _engines.Length; i++)
                {
                    EngineStats s = _engines[i].Stats;
                    var load = new WorkerLoad
                    {
                        WorkerId = InstanceId,
                        DpRank = _options.FirstDpRank + i,
                        Running = s.RunningRequests,
                        Waiting = s.WaitingRequests,
                        KvBlocksUsed = s.KvBlocksUsed,
                        KvBlocksTotal = s.KvBlocksTotal,
                        PrefixHitRate = s.PrefixHitRate,
                        TimestampMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
                    };
                    try
                    {
                        await _runtime.Events.PublishAsync(subject, JsonSerializer.SerializeToUtf8Bytes(load, WorkerJsonContext.Default.WorkerLoad), cancellationToken).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        Interlocked.Increment(ref _publishFailures);
                        Log.PublishFailed(_logger, subject, e);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Publishing on {Subject} failed")]
        public static partial void PublishFailed(ILogger logger, string subject, Exception exception);

        [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Request {RequestId}: pushing the KV to decode worker {DecodeWorker} at {Address} failed: {Reason}")]
        public static partial void PushFailed(ILogger logger, string requestId, string decodeWorker, string address, string reason);

        [LoggerMessage(EventId = 4003, Level = LogLevel.Warning, Message = "Request {RequestId}: refusing to prefill: this prefill worker {PrefillWorker} serves weights {Ours}, decode worker {DecodeWorker} serves {Theirs} (another model under the same name)")]
        public static partial void ModelMismatch(ILogger logger, string requestId, string prefillWorker, string ours, string decodeWorker, string theirs);

        [LoggerMessage(EventId = 4004, Level = LogLevel.Information, Message = "Worker {WorkerId} draining: model card withdrawn, waiting up to {TimeoutSeconds} s for {InFlight} requests in flight")]
        public static partial void Draining(ILogger logger, string workerId, int inFlight, double timeoutSeconds);

        [LoggerMessage(EventId = 4005, Level = LogLevel.Information, Message = "Worker {WorkerId} drained: {Left} requests still running are stopped now (their frontends migrate them)")]
        public static partial void Drained(ILogger logger, string workerId, int left);

        [LoggerMessage(EventId = 4006, Level = LogLevel.Warning, Message = "Worker {WorkerId}: withdrawing the model card failed ({Reason}); draining anyway")]
        public static partial void WithdrawFailed(ILogger logger, string workerId, string reason);

        [LoggerMessage(EventId = 4007, Level = LogLevel.Information,
            Message = "request {RequestId} worker={WorkerId} dp_rank={DpRank} tokens_in={PromptTokens} cached={CachedTokens} tokens_out={CompletionTokens} finish={FinishReason} prefill={Prefill} duration_ms={DurationMs} trace_id={TraceId}")]
        public static partial void RequestServed(ILogger logger, string requestId, string workerId, int dpRank, int promptTokens, int cachedTokens, int completionTokens, string finishReason, string prefill, double durationMs, string traceId);

        [LoggerMessage(EventId = 4008, Level = LogLevel.Information,
            Message = "request {RequestId} worker={WorkerId} prefilled_for={DecodeWorker} kv_tokens={Tokens} kv_bytes={Bytes} transfer_ms={TransferMs} duration_ms={DurationMs} trace_id={TraceId}")]
        public static partial void RequestPrefilled(ILogger logger, string requestId, string workerId, string decodeWorker, int tokens, long bytes, double transferMs, double durationMs, string traceId);
    }

    /// <summary>What a request's log line needs from its start: its id, the rank serving it, its trace id ("-" without one), and when it began.</summary>
    private readonly record struct ServedRequest(string Id, int DpRank, string TraceId, long Start);
}

using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
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
/// router loads to resync, see Kv/README.md). Bad payloads are answered with an
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

    private readonly DistributedRuntime _runtime;
    private readonly IEngine _engine;
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
    private Task _publishers = Task.CompletedTask;

    private EngineWorker(DistributedRuntime runtime, IEngine engine, EndpointAddress address, EngineWorkerOptions options, ILogger logger)
    {
        _runtime = runtime;
        _engine = engine;
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

    /// <summary>KV events published on the event plane so far.</summary>
    public long KvEventsPublished => Interlocked.Read(ref _kvEventsPublished);

    /// <summary>KV events dropped because the buffer was full (the event plane slower than the engine).</summary>
    public long KvEventsDropped => Interlocked.Read(ref _kvEventsDropped);

    /// <summary>Publishes (KV events and load reports) that failed.</summary>
    public long PublishFailures => Interlocked.Read(ref _publishFailures);

    /// <summary>The engine's counters.</summary>
    public EngineStats Stats => _engine.Stats;

    /// <summary>Starts serving <paramref name="engine"/> at <paramref name="address"/>.</summary>
    public static async Task<EngineWorker> StartAsync(DistributedRuntime runtime, IEngine engine, EndpointAddress address, ILogger? logger = null, CancellationToken cancellationToken = default) =>
        await StartAsync(runtime, engine, address, EngineWorkerOptions.Default, logger, cancellationToken).ConfigureAwait(false);

    /// <summary>Starts serving <paramref name="engine"/> at <paramref name="address"/> with <paramref name="options"/>.</summary>
    public static async Task<EngineWorker> StartAsync(DistributedRuntime runtime, IEngine engine, EndpointAddress address, EngineWorkerOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        var worker = new EngineWorker(runtime, engine, address, options.Validate(), logger ?? NullLogger.Instance);
        if (engine.KvEvents is { } log)
        {
            log.Published += e => worker._kvEvents.Writer.TryWrite(e);
        }

        worker._publishers = Task.WhenAll(
            Task.Run(() => worker.PublishKvEventsAsync(worker._stop.Token), CancellationToken.None),
            Task.Run(() => worker.PublishLoadAsync(worker._stop.Token), CancellationToken.None));
        // The dump endpoint first: a router that sees the worker in discovery can resync at once.
        worker._dumpServed = await runtime.ServeEndpointAsync(DumpAddress(address), worker.HandleDumpAsync, cancellationToken).ConfigureAwait(false);
        worker._served = await runtime.ServeEndpointAsync(address, worker.HandleAsync, cancellationToken).ConfigureAwait(false);
        return worker;
    }

    /// <summary>The <see cref="KvDumpEndpoint"/> beside <paramref name="generate"/> (same namespace and component).</summary>
    public static EndpointAddress DumpAddress(EndpointAddress generate)
    {
        ArgumentNullException.ThrowIfNull(generate);
        return new EndpointAddress(generate.Namespace, generate.Component, KvDumpEndpoint);
    }

    /// <summary>Parses a generate payload into an engine request; <see cref="EndpointException"/> (invalid_request) when it is not one.</summary>
    public static EngineRequest ParseRequest(string requestId, ReadOnlySpan<byte> payload)
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

        if (request.TokenIds is not { Count: > 0 } tokens)
        {
            throw new EndpointException("invalid_request", "token_ids must be a non-empty array");
        }

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

        return new EngineRequest(request.RequestId is { Length: > 0 } id ? id : requestId, tokens, sampling);
    }

    /// <summary>An engine output as a generate response.</summary>
    public static byte[] SerializeResponse(EngineOutput output) => JsonSerializer.SerializeToUtf8Bytes(new GenerateResponse
    {
        TokenIds = output.TokenIds,
        Logprobs = output.Logprobs,
        TopLogprobs = output.TopLogprobs?.Select(l => (IReadOnlyList<GenerateTopLogprob>)l.Select(t => new GenerateTopLogprob(t.TokenId, t.Logprob)).ToArray()).ToArray(),
        FinishReason = output.FinishReason?.ToWire(),
        PromptTokens = output.FinishReason is null ? null : output.PromptTokens,
        CachedTokens = output.FinishReason is null ? null : output.CachedTokens,
    }, WorkerJsonContext.Default.GenerateResponse);

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
        _stop.Dispose();
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> HandleAsync(RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _requestsTotal);
        Interlocked.Increment(ref _inFlight);
        bool failed = true;
        try
        {
            await foreach (ReadOnlyMemory<byte> response in GenerateAsync(context, payload, cancellationToken).ConfigureAwait(false))
            {
                yield return response;
            }

            failed = false;
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
            if (failed && !cancellationToken.IsCancellationRequested)
            {
                Interlocked.Increment(ref _requestErrors);
            }
        }
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> HandleDumpAsync(RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        KvEventDump dump = await _engine.DumpKvAsync(cancellationToken).ConfigureAwait(false);
        if (dump.WorkerId != InstanceId)
        {
            dump = dump with { WorkerId = InstanceId };
        }
        yield return KvEventJson.SerializeDumpToUtf8(dump);
    }

    private async IAsyncEnumerable<ReadOnlyMemory<byte>> GenerateAsync(RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        EngineRequest request = ParseRequest(context.RequestId, payload.Span);
        IAsyncEnumerator<EngineOutput> outputs;
        try
        {
            outputs = _engine.SubmitAsync(request, cancellationToken).GetAsyncEnumerator(cancellationToken);
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

                yield return SerializeResponse(outputs.Current);
            }
        }
        finally
        {
            await outputs.DisposeAsync().ConfigureAwait(false);
        }
    }

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
                EngineStats s = _engine.Stats;
                var load = new WorkerLoad
                {
                    WorkerId = InstanceId,
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
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Publishing on {Subject} failed")]
        public static partial void PublishFailed(ILogger logger, string subject, Exception exception);
    }
}

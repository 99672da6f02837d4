using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json;
using Dynamo.Components.Registry;
using Dynamo.Components.Tracing;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Routing;
using Dynamo.Llm.Tracing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Components.Processing;

/// <summary>
/// The Processor component of the guides' graphs (Frontend -> Processor -> Router -> Worker): serves
/// <c>{ns}.processor.generate</c>, where frontends send OpenAI requests as their clients wrote them. It
/// follows the namespace's model cards like a frontend, applies the chat template and tokenizer, routes
/// each choice (its own <see cref="ProcessorOptions.RouterMode"/>; the shared Router component when one
/// is registered), detokenizes and cuts stop strings, and streams postprocessed deltas back
/// (<see cref="ProcessorFrame"/>). A frontend that sees a Processor registered relays to it and keeps
/// only HTTP, SSE and metrics; several processors share the load (each request goes to one).
/// </summary>
public sealed partial class ProcessorServer : IAsyncDisposable
{
    /// <summary>The component and endpoint names: <c>{ns}.processor.generate</c>.</summary>
    public const string ComponentName = "processor";

    /// <inheritdoc cref="ComponentName"/>
    public const string EndpointName = "generate";

    private static readonly TimeSpan ModelWait = TimeSpan.FromSeconds(2);

    private readonly ModelRegistry _registry;
    private readonly ServedEndpoint _served;
    private readonly RequestCounts _requests;
    private int _disposed;

    private ProcessorServer(ModelRegistry registry, ServedEndpoint served, RequestCounts requests, EndpointAddress address)
    {
        Address = address;
        _registry = registry;
        _served = served;
        _requests = requests;
    }

    /// <summary>Requests received since start (answered or failed).</summary>
    public long Requests => Volatile.Read(ref _requests.Value);

    /// <summary>Requests being answered now.</summary>
    public long InflightRequests => Volatile.Read(ref _requests.Inflight);

    /// <summary>The endpoint it serves.</summary>
    public EndpointAddress Address { get; }

    /// <summary>The model names this processor serves now.</summary>
    public IReadOnlyList<string> Models => [.. _registry.Models.Keys.Order(StringComparer.Ordinal)];

    /// <summary>The served models and their endpoints' routers (tests look at a router's view).</summary>
    internal ModelRegistry Registry => _registry;

    /// <summary>Where the processors of <paramref name="namespace"/> serve.</summary>
    public static EndpointAddress AddressFor(string @namespace) => new(@namespace, ComponentName, EndpointName);

    /// <summary>
    /// Follows the model cards of <see cref="ProcessorOptions.Namespace"/> (returns once the existing ones
    /// are read) and serves. HTTP settings of <paramref name="options"/> are not used.
    /// </summary>
    public static async Task<ProcessorServer> StartAsync(DistributedRuntime runtime, ProcessorOptions options, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ILogger logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Dynamo.Processor");
        ModelRegistry registry = await ModelRegistry.StartAsync(runtime, options, logger, cancellationToken).ConfigureAwait(false);
        try
        {
            var pipeline = new GenerationPipeline(registry);
            var requests = new RequestCounts();
            ServedEndpoint served = await runtime.ServeEndpointAsync(AddressFor(options.Namespace),
                TracedHandler.Wrap(DynamoTracing.Processor, DynamoTracing.Spans.ProcessorServe, (context, payload, ct) => HandleAsync(registry, pipeline, logger, requests, context, payload, ct)),
                cancellationToken).ConfigureAwait(false);
            return new ProcessorServer(registry, served, requests, AddressFor(options.Namespace));
        }
        catch
        {
            await registry.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The counters of the KV routers this processor runs, by endpoint (its status port exports them).</summary>
    public IEnumerable<(string Endpoint, RouterStats Stats)> KvRouterStats() => _registry.KvRouterStats();

    /// <summary>The streams this processor moved to another worker (its status port exports them).</summary>
    public MigrationCounters Migration => _registry.Migration;

    /// <summary>The disaggregation decisions this processor made, by model (its status port exports them).</summary>
    public IEnumerable<(string Model, DisaggregationCounters Counters)> Disaggregation() => _registry.Disaggregation();

    /// <summary>Waits until <paramref name="name"/> is served and its tokenizer is loaded.</summary>
    public Task WaitForModelAsync(string name, CancellationToken cancellationToken = default) => _registry.WaitForModelAsync(name, cancellationToken);

    /// <summary>
    /// Graceful drain (SIGTERM): marked draining, frontends send new requests to other processors (or preprocess
    /// themselves) while the ones in flight finish, for at most <paramref name="timeout"/>. Returns how many
    /// are left; dispose afterwards.
    /// </summary>
    public Task<long> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _served.DrainAsync(() => InflightRequests, timeout, cancellationToken);

    /// <summary>Leaves discovery (new requests go to other processors), ends the requests in flight, stops following the cards.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _served.DisposeAsync().ConfigureAwait(false);
        await _registry.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Serializes a frame.</summary>
    internal static byte[] Serialize(ProcessorFrame frame) => JsonSerializer.SerializeToUtf8Bytes(frame, ProcessorJsonContext.Default.ProcessorFrame);

    /// <summary>The delta frame of <paramref name="e"/> (without log probabilities written straight, <see cref="ProcessorDeltaReader"/>).</summary>
    internal static byte[] SerializeDelta(in ChoiceEvent e) => ProcessorDeltaReader.Write(e) ?? SerializeDeltaWithSerializer(e);

    /// <summary><see cref="SerializeDelta"/> through the serializer alone.</summary>
    internal static byte[] SerializeDeltaWithSerializer(in ChoiceEvent e) => Serialize(new ProcessorFrame
    {
        Type = ProcessorFrame.DeltaType,
        Index = e.Index,
        Text = e.Delta.Text,
        TokenLogprobs = e.Delta.Logprobs,
        TextOffset = e.Delta.TextOffset,
        FinishReason = e.Delta.FinishReason,
        NewTokens = e.NewTokens,
        CompletionTokens = e.CompletionTokens,
        CachedTokens = e.CachedTokens,
        TokenIds = e.TokenIds.IsEmpty ? null : e.TokenIds.ToArray(),
    });

    /// <summary>The error frame of <paramref name="error"/>.</summary>
    internal static ProcessorFrame ErrorFrame(OpenAiException error) => new()
    {
        Type = ProcessorFrame.ErrorType,
        Status = error.StatusCode,
        RetryAfter = error.RetryAfterSeconds,
        Error = error.ToResponse().Error,
    };

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> HandleAsync(ModelRegistry registry, GenerationPipeline pipeline, ILogger logger, RequestCounts requests, RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref requests.Value);
        Interlocked.Increment(ref requests.Inflight);
        try
        {
            await foreach (ReadOnlyMemory<byte> frame in ProcessAsync(registry, pipeline, logger, payload, cancellationToken).ConfigureAwait(false))
            {
                yield return frame;
            }
        }
        finally
        {
            Interlocked.Decrement(ref requests.Inflight);
        }
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> ProcessAsync(ModelRegistry registry, GenerationPipeline pipeline, ILogger logger, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        ProcessorRequest request = Parse(payload);
        (Generation? generation, OpenAiException? failure) = await StartAsync(registry, pipeline, request, cancellationToken).ConfigureAwait(false);
        if (generation is null)
        {
            Log.Processed(logger, request.RequestId, failure!.StatusCode, 0, 0, Math.Round(Stopwatch.GetElapsedTime(start).TotalMilliseconds, 1));
            yield return Serialize(ErrorFrame(failure));
            yield break;
        }

        int status = 499;
        var completion = new int[generation.Info.ChoiceCount];
        try
        {
            await using (generation.ConfigureAwait(false))
            {
                GenerationInfo info = generation.Info;
                yield return Serialize(new ProcessorFrame
                {
                    Type = ProcessorFrame.StartType,
                    Choices = info.ChoiceCount,
                    N = info.N,
                    PromptTokens = info.PromptTokens,
                    Stream = info.Stream,
                    IncludeUsage = info.IncludeUsage,
                    Logprobs = (int)info.Logprobs,
                    TopLogprobs = info.TopLogprobs,
                });
                await foreach (ChoiceEvent e in generation.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                {
                    if (e.Error is not null)
                    {
                        status = e.Error.StatusCode;
                        yield return Serialize(ErrorFrame(e.Error));
                        yield break;
                    }

                    completion[e.Index] = e.CompletionTokens;
                    yield return SerializeDelta(e);
                }

                status = 200;
            }
        }
        finally
        {
            Log.Processed(logger, request.RequestId, status, generation.Info.PromptTokens, completion.Sum(), Math.Round(Stopwatch.GetElapsedTime(start).TotalMilliseconds, 1));
        }
    }

    private static ProcessorRequest Parse(ReadOnlyMemory<byte> payload)
    {
        ProcessorRequest request;
        try
        {
            request = JsonSerializer.Deserialize(payload.Span, ProcessorJsonContext.Default.ProcessorRequest) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new EndpointException("invalid_request", $"malformed processor request: {e.Message}");
        }

        if (request.Version is not (ProcessorRequest.NewVersion or ProcessorRequest.ResumeVersion))
        {
            throw new EndpointException("unsupported_version", $"processor request version {request.Version} is not supported (this processor speaks 1 and 2)");
        }

        if ((request.Version == ProcessorRequest.ResumeVersion) != (request.Resume is not null))
        {
            throw new EndpointException("invalid_request", $"a processor request of version {request.Version} {(request.Resume is null ? "needs" : "cannot have")} 'resume'");
        }

        if (ResponseShape.FromKind(request.Kind) is null)
        {
            throw new EndpointException("invalid_request", $"processor request kind '{request.Kind}' is not chat or completions");
        }

        return request;
    }

    private static async Task<(Generation? Generation, OpenAiException? Failure)> StartAsync(ModelRegistry registry, GenerationPipeline pipeline, ProcessorRequest request, CancellationToken cancellationToken)
    {
        try
        {
            ResponseShape shape = ResponseShape.FromKind(request.Kind)!;
            // The body's own bytes, as the frontend relayed them: re-serializing would copy them and would throw
            // on a string the reader refuses with a 400 (a lone surrogate escape).
            OpenAiRequestBase parsed = shape.ReadRequest(JsonMarshal.GetRawUtf8Value(request.Body));
            string name = string.IsNullOrEmpty(parsed.Model) ? throw OpenAiException.BadRequest("'model' is required.", "model", "missing_model") : parsed.Model;
            ServedModel model = await FindAsync(registry, name, cancellationToken).ConfigureAwait(false);
            return (await pipeline.StartAsync(parsed, shape, model, request.RequestId, request.Resume, cancellationToken).ConfigureAwait(false), null);
        }
        catch (OpenAiException e)
        {
            return (null, e);
        }
    }

    /// <summary>The model, waiting briefly for a card the frontend saw first (both follow the same discovery).</summary>
    private static async Task<ServedModel> FindAsync(ModelRegistry registry, string name, CancellationToken cancellationToken)
    {
        if (registry.Find(name) is { } model)
        {
            return model;
        }

        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(ModelWait);
        try
        {
            await registry.WaitForModelAsync(name, wait.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
        }

        return registry.Find(name) ?? throw OpenAiException.ModelNotFound(name);
    }

    /// <summary>A count shared with the handler.</summary>
    private sealed class RequestCounts
    {
        public long Value;
        public long Inflight;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5301, Level = LogLevel.Information,
            Message = "processed {RequestId} status={Status} tokens_in={PromptTokens} tokens_out={CompletionTokens} duration_ms={DurationMs}")]
        public static partial void Processed(ILogger logger, string requestId, int status, int promptTokens, int completionTokens, double durationMs);
    }
}

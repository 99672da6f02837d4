using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Dynamo.Components.Tracing;
using Dynamo.Llm.Routing;
using Dynamo.Llm.Tracing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Components.Routing;

/// <summary>
/// The KV router as its own component, shared by several frontends: serves <c>{ns}.router.route</c> for
/// the workers of one endpoint (a <see cref="KvRouterService"/> follows them). A route request's stream
/// yields the decision, then stays open until the frontend closes it when the request ends on the
/// worker: the decision (the load it charges) lives exactly as long as the request, whichever frontend
/// sent it, so no frontend can starve a worker another one fills. A rejection is an error frame whose code
/// names its <see cref="RouterRejection"/> (<see cref="CodeOf"/>): <c>router_overloaded</c> (queue full), <c>router_queue_timeout</c>,
/// <c>router_no_worker</c>, <c>invalid_request</c>. The decision names a lease id; the frontend tells the request's first
/// token on <c>{ns}.router.first_token</c> (<see cref="RouteFirstToken"/>: the decision's prompt stops counting as queued
/// prefill), and when it knows the request's cached tokens sends them on <c>{ns}.router.complete</c>
/// (<see cref="RouteCompletion"/>) before it closes the stream, and the decision completes with them (the router's accuracy
/// check and eviction estimate hear of them).
/// </summary>
public sealed class RouterServer : IAsyncDisposable
{
    /// <summary>The router component's endpoint name.</summary>
    public const string RouteEndpoint = "route";

    /// <summary>The error code of a <see cref="RouterRejection.QueueFull"/> rejection.</summary>
    public const string QueueFullCode = "router_overloaded";

    /// <summary>The error code of a <see cref="RouterRejection.QueueTimeout"/> rejection.</summary>
    public const string QueueTimeoutCode = "router_queue_timeout";

    /// <summary>The error code of a <see cref="RouterRejection.NoWorker"/> rejection.</summary>
    public const string NoWorkerCode = "router_no_worker";

    /// <summary>The error code of a <see cref="RouterRejection.InvalidRequest"/> rejection (and of a malformed route request).</summary>
    public const string InvalidRequestCode = "invalid_request";

    /// <summary>The router component's endpoint that answers its <see cref="RouterView"/>.</summary>
    public const string ViewEndpoint = "view";

    /// <summary>The router component's endpoint that takes a request's <see cref="RouteCompletion"/>.</summary>
    public const string CompleteEndpoint = "complete";

    /// <summary>The router component's endpoint that takes a request's <see cref="RouteFirstToken"/>.</summary>
    public const string FirstTokenEndpoint = "first_token";

    /// <summary>The router component's endpoint that answers the other replicas' <see cref="RouterChargeQuery"/>s.</summary>
    public const string ChargesEndpoint = "charges";

    private readonly KvRouterService _service;
    private readonly RouterReplicaSync _replicas;
    private readonly ServedEndpoint _view;
    private readonly ServedEndpoint _complete;
    private readonly ServedEndpoint _firstToken;
    private readonly ServedEndpoint _served;
    private readonly InFlight _inFlight;

    private RouterServer(KvRouterService service, RouterReplicaSync replicas, ServedEndpoint view, ServedEndpoint complete, ServedEndpoint firstToken, ServedEndpoint served, InFlight inFlight)
    {
        _service = service;
        _replicas = replicas;
        _view = view;
        _complete = complete;
        _firstToken = firstToken;
        _served = served;
        _inFlight = inFlight;
    }

    /// <summary>Charge events this replica published to the others, applied from them and lost, and its resyncs with them.</summary>
    public (long Published, long Applied, long Lost, long Resyncs) ReplicaCharges => (_replicas.Published, _replicas.Applied, _replicas.Lost, _replicas.Resyncs);

    /// <summary>Route streams open now (each lasts while its request runs).</summary>
    public long InFlightRequests => Volatile.Read(ref _inFlight.Count);

    /// <summary>
    /// Graceful drain (SIGTERM): marked draining, frontends route by themselves or through another router while
    /// the route streams in flight end, for at most <paramref name="timeout"/>. Returns how many are left;
    /// dispose afterwards.
    /// </summary>
    public Task<long> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default) =>
        _served.DrainAsync(() => InFlightRequests, timeout, cancellationToken);

    /// <summary>The router it serves.</summary>
    public KvRouter Router => _service.Router;

    /// <summary>Where a router component for <paramref name="workers"/>' namespace serves: <c>{ns}.router.route</c>.</summary>
    public static EndpointAddress AddressFor(EndpointAddress workers) => new(workers.Namespace, "router", RouteEndpoint);

    /// <summary>Where a router component for <paramref name="workers"/>' namespace answers its view: <c>{ns}.router.view</c>.</summary>
    public static EndpointAddress ViewAddressFor(EndpointAddress workers) => new(workers.Namespace, "router", ViewEndpoint);

    /// <summary>Where a router component for <paramref name="workers"/>' namespace takes route completions: <c>{ns}.router.complete</c>.</summary>
    public static EndpointAddress CompleteAddressFor(EndpointAddress workers) => new(workers.Namespace, "router", CompleteEndpoint);

    /// <summary>Where a router component for <paramref name="workers"/>' namespace takes first tokens: <c>{ns}.router.first_token</c>.</summary>
    public static EndpointAddress FirstTokenAddressFor(EndpointAddress workers) => new(workers.Namespace, "router", FirstTokenEndpoint);

    /// <summary>Where a router component for <paramref name="workers"/>' namespace answers its peers' charge queries: <c>{ns}.router.charges</c>.</summary>
    public static EndpointAddress ChargesAddressFor(EndpointAddress workers) => new(workers.Namespace, "router", ChargesEndpoint);

    /// <summary>
    /// Follows the workers of <paramref name="workers"/>, shares its charges with the other router replicas of that endpoint
    /// (<see cref="RouterReplicaSync"/>), and serves routing on <see cref="AddressFor"/> and its view on <see cref="ViewAddressFor"/>.
    /// </summary>
    public static async Task<RouterServer> StartAsync(DistributedRuntime runtime, EndpointAddress workers, KvRouterOptions? options = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        logger ??= NullLogger.Instance;
        KvRouterService service = await KvRouterService.StartAsync(runtime, workers, options, logger: logger, cancellationToken: cancellationToken).ConfigureAwait(false);
        RouterReplicaSync? replicas = null;
        ServedEndpoint? view = null;
        ServedEndpoint? complete = null;
        ServedEndpoint? firstToken = null;
        try
        {
            replicas = await RouterReplicaSync.StartAsync(runtime, workers, service.Router, logger, cancellationToken: cancellationToken).ConfigureAwait(false);
            KvRouter router = service.Router;
            long id = runtime.InstanceId;
            view = await runtime.ServeEndpointAsync(ViewAddressFor(workers), (_, _, _) => ViewAsync(id, router), cancellationToken).ConfigureAwait(false);
            var inFlight = new InFlight();
            complete = await runtime.ServeEndpointAsync(CompleteAddressFor(workers), (_, payload, _) => CompleteAsync(inFlight, payload), cancellationToken).ConfigureAwait(false);
            firstToken = await runtime.ServeEndpointAsync(FirstTokenAddressFor(workers), (_, payload, _) => FirstTokenAsync(inFlight, payload), cancellationToken).ConfigureAwait(false);
            ServedEndpoint served = await runtime.ServeEndpointAsync(AddressFor(workers), TracedHandler.Wrap(DynamoTracing.Router, DynamoTracing.Spans.RouterServe, (context, payload, ct) => CountedAsync(inFlight, HandleAsync(router, inFlight, context, payload, ct), ct)), cancellationToken).ConfigureAwait(false);
            return new RouterServer(service, replicas, view, complete, firstToken, served, inFlight);
        }
        catch
        {
            if (firstToken is not null)
            {
                await firstToken.DisposeAsync().ConfigureAwait(false);
            }

            if (complete is not null)
            {
                await complete.DisposeAsync().ConfigureAwait(false);
            }

            if (view is not null)
            {
                await view.DisposeAsync().ConfigureAwait(false);
            }

            if (replicas is not null)
            {
                await replicas.DisposeAsync().ConfigureAwait(false);
            }

            await service.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Asks one router replica (or any, with no <paramref name="instanceId"/>) for its view.</summary>
    public static async Task<RouterView> ViewOfAsync(EndpointClient views, long? instanceId = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(views);
        await foreach (ReadOnlyMemory<byte> frame in views.StreamAsync("{}"u8.ToArray(), instanceId, cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            return RouterView.Parse(frame.Span);
        }

        throw new InvalidDataException("the router component answered no view");
    }

    /// <summary>The wire code of a rejection.</summary>
    public static string CodeOf(RouterRejection reason) => reason switch
    {
        RouterRejection.QueueFull => QueueFullCode,
        RouterRejection.QueueTimeout => QueueTimeoutCode,
        RouterRejection.NoWorker => NoWorkerCode,
        RouterRejection.InvalidRequest => InvalidRequestCode,
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, "not a rejection"),
    };

    /// <summary>The rejection a wire code names, or null for any other code.</summary>
    public static RouterRejection? RejectionOf(string code) => code switch
    {
        QueueFullCode => RouterRejection.QueueFull,
        QueueTimeoutCode => RouterRejection.QueueTimeout,
        NoWorkerCode => RouterRejection.NoWorker,
        InvalidRequestCode => RouterRejection.InvalidRequest,
        _ => null,
    };

    /// <summary>Serializes a route request.</summary>
    public static byte[] Serialize(RouteRequest request) => JsonSerializer.SerializeToUtf8Bytes(request, RoutingJsonContext.Default.RouteRequest);

    /// <summary>Parses a route response.</summary>
    public static RouteResponse ParseResponse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouteResponse) ?? throw new InvalidDataException("null route response");

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await _served.DisposeAsync().ConfigureAwait(false);
        await _firstToken.DisposeAsync().ConfigureAwait(false);
        await _complete.DisposeAsync().ConfigureAwait(false);
        await _view.DisposeAsync().ConfigureAwait(false);
        await _replicas.DisposeAsync().ConfigureAwait(false);
        await _service.DisposeAsync().ConfigureAwait(false);
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> ViewAsync(long routerId, KvRouter router)
    {
        await Task.CompletedTask.ConfigureAwait(false);
        yield return RouterView.Of(routerId, router.GetStats()).ToUtf8Json();
    }

    // A request's cached tokens from its frontend: its decision completes with them (the route stream closes after).
    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> CompleteAsync(InFlight inFlight, ReadOnlyMemory<byte> payload)
    {
        RouteCompletion completion = Parse(payload.Span, RoutingJsonContext.Default.RouteCompletion, c => c.Version, "route completion");
        if (completion.CachedTokens < 0)
        {
            throw new EndpointException(InvalidRequestCode, $"cached_tokens must be 0 or more (got {completion.CachedTokens})");
        }

        if (completion.OutputTokens is < 0)
        {
            throw new EndpointException(InvalidRequestCode, $"output_tokens must be 0 or more (got {completion.OutputTokens})");
        }

        // A lease already ended (its stream closed first, or a repeat) has nothing to complete.
        if (inFlight.Leases.TryGetValue(completion.LeaseId, out RoutingDecision? decision))
        {
            decision.Complete(completion.CachedTokens, completion.OutputTokens);
        }

        await Task.CompletedTask.ConfigureAwait(false);
        yield break;
    }

    // A request's first token from its frontend: its decision's prompt stops counting as the worker's queued prefill.
    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> FirstTokenAsync(InFlight inFlight, ReadOnlyMemory<byte> payload)
    {
        RouteFirstToken firstToken = Parse(payload.Span, RoutingJsonContext.Default.RouteFirstToken, f => f.Version, "route first token");

        // A lease already ended (or completed, or told before) has no prefill left to release.
        if (inFlight.Leases.TryGetValue(firstToken.LeaseId, out RoutingDecision? decision))
        {
            decision.MarkFirstToken();
        }

        await Task.CompletedTask.ConfigureAwait(false);
        yield break;
    }

    // One message of the protocol (version 1), or the error frame that says what is wrong with it.
    private static T Parse<T>(ReadOnlySpan<byte> payload, JsonTypeInfo<T> type, Func<T, int> version, string what)
    {
        T message;
        try
        {
            message = JsonSerializer.Deserialize(payload, type) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new EndpointException(InvalidRequestCode, $"malformed {what}: {e.Message}");
        }

        return version(message) == 1 ? message
            : throw new EndpointException("unsupported_version", $"{what} version {version(message)} is not supported (this router speaks 1)");
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> CountedAsync(InFlight inFlight, IAsyncEnumerable<ReadOnlyMemory<byte>> responses, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref inFlight.Count);
        try
        {
            await foreach (ReadOnlyMemory<byte> response in responses.WithCancellation(cancellationToken).ConfigureAwait(false))
            {
                yield return response;
            }
        }
        finally
        {
            Interlocked.Decrement(ref inFlight.Count);
        }
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> HandleAsync(KvRouter router, InFlight inFlight, RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        RouteRequest request = Parse(payload.Span, RoutingJsonContext.Default.RouteRequest, r => r.Version, "route request");
        int[] tokens = request.TokenIds as int[] ?? [.. request.TokenIds];
        RoutingDecision decision;
        try
        {
            decision = await router.RouteAsync(tokens, new RouteOverrides
            {
                RequestId = request.RequestId ?? context.RequestId,
                AllowedWorkers = request.AllowedWorkers is null ? null : new HashSet<long>(request.AllowedWorkers),
                OverlapScoreWeight = request.OverlapScoreWeight,
                Temperature = request.Temperature,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (RouterRejectedException e)
        {
            throw new EndpointException(CodeOf(e.Reason), e.Message);
        }

        long lease = Interlocked.Increment(ref inFlight.NextLease);
        inFlight.Leases[lease] = decision;
        try
        {
            yield return JsonSerializer.SerializeToUtf8Bytes(new RouteResponse
            {
                WorkerId = decision.WorkerId,
                DpRank = decision.DpRank,
                OverlapBlocks = decision.OverlapBlocks,
                PredictedCachedTokens = decision.PredictedCachedTokens,
                LeaseId = lease,
            }, RoutingJsonContext.Default.RouteResponse);

            // Held until the frontend closes the stream (its request ended): then the load is released, unless a
            // RouteCompletion released it first with the request's cached tokens.
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
        finally
        {
            inFlight.Leases.TryRemove(lease, out _);
            decision.Dispose();
        }
    }

    /// <summary>The route streams open now, and their decisions by lease id.</summary>
    private sealed class InFlight
    {
        public long Count;

        public long NextLease;

        public ConcurrentDictionary<long, RoutingDecision> Leases { get; } = new();
    }
}

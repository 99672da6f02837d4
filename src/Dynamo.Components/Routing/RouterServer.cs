using System.Runtime.CompilerServices;
using System.Text.Json;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Components.Routing;

/// <summary>
/// The KV router as its own component, shared by several frontends: serves <c>{ns}.router.route</c> for
/// the workers of one endpoint (a <see cref="KvRouterService"/> follows them). A route request's stream
/// yields the decision, then stays open until the frontend closes it when the request ends on the
/// worker: the decision (the load it charges) lives exactly as long as the request, whichever frontend
/// sent it, so no frontend can starve a worker another one fills. Overload is answered with an error
/// frame of code <c>router_overloaded</c>.
/// </summary>
public sealed class RouterServer : IAsyncDisposable
{
    /// <summary>The router component's endpoint name.</summary>
    public const string RouteEndpoint = "route";

    private readonly KvRouterService _service;
    private readonly ServedEndpoint _served;

    private RouterServer(KvRouterService service, ServedEndpoint served)
    {
        _service = service;
        _served = served;
    }

    /// <summary>The router it serves.</summary>
    public KvRouter Router => _service.Router;

    /// <summary>Where a router component for <paramref name="workers"/>' namespace serves: <c>{ns}.router.route</c>.</summary>
    public static EndpointAddress AddressFor(EndpointAddress workers) => new(workers.Namespace, "router", RouteEndpoint);

    /// <summary>Follows the workers of <paramref name="workers"/> and serves routing on <see cref="AddressFor"/>.</summary>
    public static async Task<RouterServer> StartAsync(DistributedRuntime runtime, EndpointAddress workers, KvRouterOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        KvRouterService service = await KvRouterService.StartAsync(runtime, workers, options, cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            ServedEndpoint served = await runtime.ServeEndpointAsync(AddressFor(workers), (context, payload, ct) => HandleAsync(service.Router, context, payload, ct), cancellationToken).ConfigureAwait(false);
            return new RouterServer(service, served);
        }
        catch
        {
            await service.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Serializes a route request.</summary>
    public static byte[] Serialize(RouteRequest request) => JsonSerializer.SerializeToUtf8Bytes(request, RoutingJsonContext.Default.RouteRequest);

    /// <summary>Parses a route response.</summary>
    public static RouteResponse ParseResponse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, RoutingJsonContext.Default.RouteResponse) ?? throw new InvalidDataException("null route response");

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await _served.DisposeAsync().ConfigureAwait(false);
        await _service.DisposeAsync().ConfigureAwait(false);
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> HandleAsync(KvRouter router, RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        RouteRequest request;
        try
        {
            request = JsonSerializer.Deserialize(payload.Span, RoutingJsonContext.Default.RouteRequest) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new EndpointException("invalid_request", $"malformed route request: {e.Message}");
        }

        if (request.Version != 1)
        {
            throw new EndpointException("unsupported_version", $"route request version {request.Version} is not supported (this router speaks 1)");
        }

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
        catch (RouterOverloadedException e)
        {
            throw new EndpointException("router_overloaded", e.Message);
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new EndpointException("invalid_request", e.Message);
        }

        using (decision)
        {
            yield return JsonSerializer.SerializeToUtf8Bytes(new RouteResponse
            {
                WorkerId = decision.WorkerId,
                OverlapBlocks = decision.OverlapBlocks,
                PredictedCachedTokens = decision.PredictedCachedTokens,
            }, RoutingJsonContext.Default.RouteResponse);

            // Held until the frontend closes the stream (its request ended): then the load is released.
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}

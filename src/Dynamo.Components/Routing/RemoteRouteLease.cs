using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Components.Routing;

/// <summary>
/// A lease from the shared Router component: the open route stream whose first frame named the worker.
/// The component holds its decision (the load it charged) while the stream is open; disposing the lease
/// closes the stream, which releases it. The component does not hear of the first token or the cached
/// tokens: the route stream carries nothing from the caller after the request.
/// </summary>
internal sealed class RemoteRouteLease : WorkerLease
{
    private readonly IAsyncEnumerator<ReadOnlyMemory<byte>> _stream;
    private readonly int _predicted;
    private int _disposed;

    private RemoteRouteLease(IAsyncEnumerator<ReadOnlyMemory<byte>> stream, RouteResponse route)
        : base(route.WorkerId, route.DpRank)
    {
        _stream = stream;
        _predicted = route.PredictedCachedTokens;
    }

    public override int PredictedCachedTokens => _predicted;

    /// <summary>
    /// Opens a route stream on <paramref name="component"/> (on its replica <paramref name="instanceId"/>, or any) and waits for
    /// its decision; a rejection is a <see cref="RouterRejectedException"/>.
    /// </summary>
    public static async Task<WorkerLease> StartAsync(EndpointClient component, WorkerRouteRequest request, long? instanceId, CancellationToken cancellationToken)
    {
        byte[] payload = RouterServer.Serialize(new RouteRequest
        {
            RequestId = request.RequestId,
            TokenIds = request.TokenIds,
            AllowedWorkers = request.Candidates,
            OverlapScoreWeight = request.OverlapScoreWeight,
            Temperature = request.Temperature,
        });
        IAsyncEnumerator<ReadOnlyMemory<byte>> stream = component.StreamAsync(payload, instanceId, cancellationToken: cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            if (!await stream.MoveNextAsync().ConfigureAwait(false))
            {
                throw new RequestPlaneException(RequestErrorKind.Transport, "router_unavailable", "the Router component ended the route stream without an answer");
            }

            return new RemoteRouteLease(stream, RouterServer.ParseResponse(stream.Current.Span));
        }
        catch (RequestPlaneException e) when (e.Kind == RequestErrorKind.Remote && RouterServer.RejectionOf(e.Code) is RouterRejection reason)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new RouterRejectedException(reason, e.Message, TimeSpan.FromSeconds(1), reason == RouterRejection.InvalidRequest ? "nvext" : null);
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
    }
}

using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Components.Routing;

/// <summary>
/// A lease from the shared Router component: the open route stream whose first frame named the worker.
/// The component holds its decision (the load it charged) while the stream is open; disposing the lease
/// closes the stream, which releases it. When the request completed with the engine's cached tokens and the
/// replica named a lease id, disposing first sends them to that replica (<see cref="RouteCompletion"/> on
/// <c>{ns}.router.complete</c>) and closes the stream after its answer, in the background: the decision there
/// completes with them, and the response's end does not wait for the round trip. The component does not hear of
/// the first token (the load is held until the end).
/// </summary>
internal sealed class RemoteRouteLease : WorkerLease
{
    /// <summary>A completion that the replica does not take within this gives up; closing the stream still releases the charge.</summary>
    private static readonly RequestOptions CompletionOptions = RequestOptions.Default with { Deadline = TimeSpan.FromSeconds(5) };

    private readonly IAsyncEnumerator<ReadOnlyMemory<byte>> _stream;
    private readonly int _predicted;
    private readonly long? _leaseId;
    private readonly IRequestPlane _requests;
    private readonly string _completeSubject;
    private int _cachedTokens = -1;
    private int _disposed;

    private RemoteRouteLease(IAsyncEnumerator<ReadOnlyMemory<byte>> stream, RouteResponse route, IRequestPlane requests, string completeSubject)
        : base(route.WorkerId, route.DpRank)
    {
        _stream = stream;
        _predicted = route.PredictedCachedTokens;
        _leaseId = route.LeaseId;
        _requests = requests;
        _completeSubject = completeSubject;
    }

    public override int PredictedCachedTokens => _predicted;

    /// <summary>
    /// Opens a route stream on <paramref name="component"/> (on its replica <paramref name="instanceId"/>) and waits for
    /// its decision; a rejection is a <see cref="RouterRejectedException"/>. <paramref name="requests"/> carries the
    /// request's <see cref="RouteCompletion"/> to that replica's <paramref name="complete"/> endpoint.
    /// </summary>
    public static async Task<WorkerLease> StartAsync(EndpointClient component, EndpointAddress complete, IRequestPlane requests, WorkerRouteRequest request, long instanceId, CancellationToken cancellationToken)
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

            return new RemoteRouteLease(stream, RouterServer.ParseResponse(stream.Current.Span), requests, complete.InstanceSubject(instanceId));
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

    /// <summary>Keeps the engine's cached tokens (the first count given) for the completion sent at disposal.</summary>
    public override void Complete(int? actualCachedTokens = null)
    {
        if (actualCachedTokens is int cached && cached >= 0)
        {
            Interlocked.CompareExchange(ref _cachedTokens, cached, -1);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        int cached = Volatile.Read(ref _cachedTokens);
        if (_leaseId is long lease && cached >= 0)
        {
            _ = CompleteThenCloseAsync(new RouteCompletion { LeaseId = lease, CachedTokens = cached });
            return;
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
    }

    // In the background: the completion first, so the replica's decision completes with the cached tokens, then the close.
    private async Task CompleteThenCloseAsync(RouteCompletion completion)
    {
        try
        {
            await foreach (ReadOnlyMemory<byte> _ in _requests.RequestStreamAsync(_completeSubject, completion.ToUtf8Json(), CompletionOptions.WithNewId()).ConfigureAwait(false))
            {
            }
        }
        catch (Exception e) when (e is RequestPlaneException or OperationCanceledException or ObjectDisposedException)
        {
            // The replica left, or does not answer, or is an older one without the endpoint: closing the stream still releases the charge.
        }

        try
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is RequestPlaneException or OperationCanceledException or ObjectDisposedException)
        {
            // Nothing waits on this close; the replica releases the charge when the stream goes, whatever ended it.
        }
    }
}

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
/// completes with them (and with the tokens generated, when known), and the response's end does not wait for the round
/// trip. The first token is sent to that replica's <c>{ns}.router.first_token</c> (<see cref="RouteFirstToken"/>) in
/// the background, so its decision stops counting the prompt as the worker's queued prefill while the request decodes.
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
    private readonly string _firstTokenSubject;
    private int _cachedTokens = -1;
    private int _outputTokens = -1;
    private int _firstToken;
    private int _disposed;

    private RemoteRouteLease(IAsyncEnumerator<ReadOnlyMemory<byte>> stream, RouteResponse route, IRequestPlane requests, string completeSubject, string firstTokenSubject)
        : base(route.WorkerId, route.DpRank)
    {
        _stream = stream;
        _predicted = route.PredictedCachedTokens;
        _leaseId = route.LeaseId;
        _requests = requests;
        _completeSubject = completeSubject;
        _firstTokenSubject = firstTokenSubject;
    }

    public override int PredictedCachedTokens => _predicted;

    /// <summary>
    /// Opens a route stream on <paramref name="component"/> (on its replica <paramref name="instanceId"/>) and waits for
    /// its decision; a rejection is a <see cref="RouterRejectedException"/>. <paramref name="requests"/> carries the
    /// request's <see cref="RouteFirstToken"/> and <see cref="RouteCompletion"/> to that replica's endpoints of the router
    /// component for <paramref name="workers"/>.
    /// </summary>
    public static async Task<WorkerLease> StartAsync(EndpointClient component, EndpointAddress workers, IRequestPlane requests, WorkerRouteRequest request, long instanceId, CancellationToken cancellationToken)
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

            return new RemoteRouteLease(stream, RouterServer.ParseResponse(stream.Current.Span), requests,
                RouterServer.CompleteAddressFor(workers).InstanceSubject(instanceId), RouterServer.FirstTokenAddressFor(workers).InstanceSubject(instanceId));
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

    /// <summary>Tells the replica, once and in the background (the token stream does not wait), that the first token arrived.</summary>
    public override void MarkFirstToken()
    {
        if (_leaseId is not long lease || Volatile.Read(ref _disposed) != 0 || Interlocked.Exchange(ref _firstToken, 1) != 0)
        {
            return;
        }

        byte[] payload = new RouteFirstToken { LeaseId = lease }.ToUtf8Json();
        _ = Task.Run(() => TellAsync(_firstTokenSubject, payload));
    }

    /// <summary>Keeps the engine's cached tokens and the tokens generated (the first counts given) for the completion sent at disposal.</summary>
    public override void Complete(int? actualCachedTokens = null, int? outputTokens = null)
    {
        if (actualCachedTokens is int cached && cached >= 0 && Interlocked.CompareExchange(ref _cachedTokens, cached, -1) == -1 && outputTokens is int output && output >= 0)
        {
            Volatile.Write(ref _outputTokens, output);
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
            int output = Volatile.Read(ref _outputTokens);
            _ = CompleteThenCloseAsync(new RouteCompletion { LeaseId = lease, CachedTokens = cached, OutputTokens = output >= 0 ? output : null });
            return;
        }

        await _stream.DisposeAsync().ConfigureAwait(false);
    }

    // In the background: the completion first, so the replica's decision completes with the cached tokens, then the close.
    private async Task CompleteThenCloseAsync(RouteCompletion completion)
    {
        await TellAsync(_completeSubject, completion.ToUtf8Json()).ConfigureAwait(false);
        try
        {
            await _stream.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is RequestPlaneException or OperationCanceledException or ObjectDisposedException)
        {
            // Nothing waits on this close; the replica releases the charge when the stream goes, whatever ended it.
        }
    }

    // One message to the replica, its answer awaited (at most CompletionOptions' deadline); a failure is nobody's to handle.
    private async Task TellAsync(string subject, byte[] payload)
    {
        try
        {
            await foreach (ReadOnlyMemory<byte> _ in _requests.RequestStreamAsync(subject, payload, CompletionOptions.WithNewId()).ConfigureAwait(false))
            {
            }
        }
        catch (Exception e) when (e is RequestPlaneException or OperationCanceledException or ObjectDisposedException)
        {
            // The replica left, or does not answer, or is an older one without the endpoint: the route stream's close
            // still releases the charge (a lost first token leaves the prompt charged as prefill until then).
        }
    }
}

using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Routing;

/// <summary>
/// <c>--router-mode kv</c> for one worker endpoint. While the namespace's shared Router component
/// (<see cref="RouterServer"/>, <c>{ns}.router.route</c>) is registered, every request is routed there (one
/// view of the workers' load for all frontends and processors; with several replicas, each request goes to the next
/// one in turn, and one that fails or leaves before it answers is skipped for the next); otherwise by a local <see cref="KvRouter"/>
/// that a <see cref="KvRouterService"/> feeds, started on the first such request. A candidate neither
/// router knows yet (it just joined) and a Router component that cannot be reached fall back to the
/// local router, then to round-robin: the request is served either way. The caller never sees which path
/// was taken: only the lease.
/// </summary>
internal sealed partial class KvWorkerRouter : IWorkerRouter
{
    private readonly DistributedRuntime _runtime;
    private readonly EndpointAddress _endpoint;
    private readonly KvRouterOptions _options;
    private readonly ILogger _logger;
    private readonly Lazy<Task<EndpointClient>> _component;
    private readonly Lazy<Task<KvRouterService>> _local;
    private readonly RoundRobinWorkerRouter _fallback = new();
    private int _nextReplica = -1;

    public KvWorkerRouter(DistributedRuntime runtime, EndpointAddress endpoint, KvRouterOptions options, ILogger logger)
    {
        _runtime = runtime;
        _endpoint = endpoint;
        _options = options;
        _logger = logger;
        _component = new Lazy<Task<EndpointClient>>(() => runtime.CreateClientAsync(RouterServer.AddressFor(endpoint)));
        _local = new Lazy<Task<KvRouterService>>(() => KvRouterService.StartAsync(_runtime, _endpoint, _options, logger: _logger));
    }

    public string Name => RouterModes.Kv;

    /// <summary>The local router's counters, once it has started (null while every request went to the Router component).</summary>
    public RouterStats? LocalStats => _local.IsValueCreated && _local.Value.IsCompletedSuccessfully ? _local.Value.Result.GetStats() : null;

    /// <summary>
    /// Requests waiting at <paramref name="workers"/> by their latest load reports, as the local router saw them
    /// (0 before it started: while the Router component routes this endpoint, this process reads no reports).
    /// </summary>
    public int ReportedWaiting(IReadOnlyList<long> workers) =>
        _local.IsValueCreated && _local.Value.IsCompletedSuccessfully ? _local.Value.Result.Router.ReportedWaiting(workers) : 0;

    /// <summary>The local router's service (started on demand): tests wait on its view of the workers.</summary>
    public Task<KvRouterService> LocalAsync() => _local.Value;

    /// <summary>The client of the shared Router component (created on demand): tests wait for it to see one.</summary>
    public Task<EndpointClient> ComponentAsync() => _component.Value;

    public async ValueTask<WorkerLease> RouteAsync(WorkerRouteRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        EndpointClient component = await _component.Value.ConfigureAwait(false);
        IReadOnlyList<InstanceRecord> replicas = component.AvailableInstances;
        int first = replicas.Count == 0 ? 0 : (int)((uint)Interlocked.Increment(ref _nextReplica) % (uint)replicas.Count);
        for (int i = 0; i < replicas.Count; i++)
        {
            // Replicas in turn from a rotating start; one that fails or leaves before it answers is skipped for this request.
            long replica = replicas[(first + i) % replicas.Count].InstanceId;
            try
            {
                return await RemoteRouteLease.StartAsync(component, _endpoint, _runtime.Requests, request, replica, cancellationToken).ConfigureAwait(false);
            }
            catch (RouterRejectedException e) when (e.Reason == RouterRejection.NoWorker)
            {
                Log.NoKnownCandidate(_logger, request.RequestId, "the Router component", e.Message);
                return await _fallback.RouteAsync(request, cancellationToken).ConfigureAwait(false);
            }
            catch (RequestPlaneException e) when (e.Kind != RequestErrorKind.Remote && !cancellationToken.IsCancellationRequested)
            {
                component.ReportFailure(replica);
                Log.ComponentUnreachable(_logger, request.RequestId, EndpointAddress.FormatId(replica), e.Message);
            }
        }

        KvRouterService local = await _local.Value.ConfigureAwait(false);
        try
        {
            return await local.Router.RouteAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (RouterRejectedException e) when (e.Reason == RouterRejection.NoWorker)
        {
            // The router has not seen these instances join yet; the model cards say they serve.
            Log.NoKnownCandidate(_logger, request.RequestId, "the local KV router", e.Message);
            return await _fallback.RouteAsync(request, cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await DisposeStartedAsync(_component).ConfigureAwait(false);
        await DisposeStartedAsync(_local).ConfigureAwait(false);
    }

    private static async Task DisposeStartedAsync<T>(Lazy<Task<T>> started)
        where T : IAsyncDisposable
    {
        if (!started.IsValueCreated)
        {
            return;
        }

        try
        {
            await (await started.Value.ConfigureAwait(false)).DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // One that failed to start has nothing to stop.
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6121, Level = LogLevel.Debug, Message = "Request {RequestId}: {Router} knows none of its workers yet ({Reason}); round-robin among them")]
        public static partial void NoKnownCandidate(ILogger logger, string requestId, string router, string reason);

        [LoggerMessage(EventId = 6122, Level = LogLevel.Warning, Message = "Request {RequestId}: Router component replica {ReplicaId} is unreachable ({Reason}); trying the next replica, then the local KV index")]
        public static partial void ComponentUnreachable(ILogger logger, string requestId, string replicaId, string reason);
    }
}

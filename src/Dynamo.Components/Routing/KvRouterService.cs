using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Components.Workers;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.EventPlane;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Components.Routing;

/// <summary>
/// Feeds a <see cref="KvRouter"/> from the runtime for one worker endpoint (e.g. <c>dynamo.backend.generate</c>):
/// follows its instances in discovery (a joining worker is added and resynced from its <c>kv_dump</c>
/// endpoint; a leaving one is purged from the router and the index at once), applies the workers' KV
/// events and load metrics from the event plane, and answers every gap with a dump. A service started
/// mid-traffic thus rebuilds its index from the dumps of all current workers. A frontend routes with
/// <see cref="Router"/> and sends with <see cref="Client"/>, pinned to the decision's worker.
/// </summary>
public sealed partial class KvRouterService : IAsyncDisposable
{
    private static readonly TimeSpan ResyncRetry = TimeSpan.FromSeconds(1);

    private readonly IEventSubscription? _kvEvents;
    private readonly IEventSubscription _loadMetrics;
    private readonly EndpointClient _dumpClient;
    private readonly ILogger _logger;
    private readonly Channel<bool> _resyncSignal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _membershipGate = new();
    private Task _loops = Task.CompletedTask;
    private long _dumpsLoaded;
    private long _badEvents;

    private KvRouterService(KvRouter router, EndpointClient client, EndpointClient dumpClient, IEventSubscription? kvEvents, IEventSubscription loadMetrics, ILogger logger)
    {
        Router = router;
        Client = client;
        _dumpClient = dumpClient;
        _kvEvents = kvEvents;
        _loadMetrics = loadMetrics;
        _logger = logger;
    }

    /// <summary>The router this service feeds.</summary>
    public KvRouter Router { get; }

    /// <summary>The client of the worker endpoint: send with <c>Client.StreamAsync(payload, decision.WorkerId)</c>.</summary>
    public EndpointClient Client { get; }

    /// <summary>Dumps loaded so far (joins, gaps).</summary>
    public long DumpsLoaded => Interlocked.Read(ref _dumpsLoaded);

    /// <summary>Event-plane messages that were not valid KV events or load reports.</summary>
    public long BadEvents => Interlocked.Read(ref _badEvents);

    /// <summary>KV events and load reports the event plane dropped because this service read too slowly (each KV gap is healed from a dump).</summary>
    public long EventsDropped => (_kvEvents?.Dropped ?? 0) + _loadMetrics.Dropped;

    /// <summary>The router's counters with the service's own: events dropped, malformed events, dumps loaded.</summary>
    public RouterStats GetStats() => Router.GetStats() with { EventsDropped = EventsDropped, MalformedEvents = BadEvents, DumpsLoaded = DumpsLoaded };

    /// <summary>
    /// Subscribes to the KV events and load metrics of <paramref name="address"/>'s component, follows its
    /// instances, and starts resyncing every current worker from its dump. Returns once subscribed and the
    /// current instances are added (their dumps load in the background: see <see cref="KvIndex.WorkersNeedingResync"/>).
    /// Without KV events (<see cref="KvRouterOptions.UseKvEvents"/> false) it subscribes to the load metrics only and
    /// asks for no dump: the router predicts the caches from its own decisions.
    /// </summary>
    public static async Task<KvRouterService> StartAsync(
        DistributedRuntime runtime, EndpointAddress address, KvRouterOptions? options = null, TimeProvider? timeProvider = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(address);
        var router = new KvRouter(options, timeProvider, logger);

        // Subscribe before reading instances and dumps: every event after a dump is then seen.
        IEventSubscription? kv = router.Options.UseKvEvents
            ? await runtime.Events.SubscribeAsync(address.EventSubject(EngineWorker.KvEventsTopic), cancellationToken).ConfigureAwait(false)
            : null;
        IEventSubscription load = await runtime.Events.SubscribeAsync(address.EventSubject(EngineWorker.LoadMetricsTopic), cancellationToken).ConfigureAwait(false);
        EndpointClient client = await runtime.CreateClientAsync(address, cancellationToken: cancellationToken).ConfigureAwait(false);
        EndpointClient dumps = await runtime.CreateClientAsync(EngineWorker.DumpAddress(address), cancellationToken: cancellationToken).ConfigureAwait(false);
        var service = new KvRouterService(router, client, dumps, kv, load, logger ?? NullLogger.Instance);
        client.InstancesChanged += service.SyncMembership;
        router.ResyncNeeded += service.OnResyncNeeded;
        service.SyncMembership();
        CancellationToken stop = service._stop.Token;
        service._loops = Task.WhenAll(
            kv is null ? Task.CompletedTask : Task.Run(() => service.ReadKvEventsAsync(stop), CancellationToken.None),
            Task.Run(() => service.ReadLoadAsync(stop), CancellationToken.None),
            Task.Run(() => service.ResyncAsync(stop), CancellationToken.None));
        return service;
    }

    /// <summary>Waits until no worker waits for a dump (tests, startup probes).</summary>
    public async Task WaitForResyncAsync(CancellationToken cancellationToken = default)
    {
        while (Router.Index.WorkersNeedingResync.Count > 0)
        {
            await Task.Delay(10, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        Client.InstancesChanged -= SyncMembership;
        Router.ResyncNeeded -= OnResyncNeeded;
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_kvEvents is not null)
        {
            await _kvEvents.DisposeAsync().ConfigureAwait(false);
        }

        await _loadMetrics.DisposeAsync().ConfigureAwait(false);
        try
        {
            await _loops.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        await _dumpClient.DisposeAsync().ConfigureAwait(false);
        await Client.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    private void SyncMembership()
    {
        bool added = false;
        lock (_membershipGate)
        {
            // Each instance is one routing target per data-parallel rank it lists (one, rank 0, when it lists none).
            var listed = new HashSet<RoutingTarget>(Client.Instances.SelectMany(
                r => (r.DataParallelRanks ?? [0]).Select(rank => new RoutingTarget(r.InstanceId, rank))));
            var listedWorkers = new HashSet<long>(listed.Select(t => t.WorkerId));
            foreach (RoutingTarget target in Router.Workers)
            {
                if (!listedWorkers.Contains(target.WorkerId))
                {
                    if (Router.RemoveWorker(target.WorkerId))
                    {
                        Log.WorkerLeft(_logger, target.WorkerId);
                    }
                }
                else if (!listed.Contains(target))
                {
                    Router.RemoveTarget(target);
                    Log.WorkerLeft(_logger, target);
                }
            }

            foreach (RoutingTarget target in listed)
            {
                if (Router.AddWorker(target))
                {
                    Log.WorkerJoined(_logger, target);
                    if (Router.Options.UseKvEvents)
                    {
                        Router.Index.RequestResync(target);
                        added = true;
                    }
                }
            }
        }

        if (added)
        {
            _resyncSignal.Writer.TryWrite(true);
        }
    }

    private void OnResyncNeeded(RoutingTarget target) => _resyncSignal.Writer.TryWrite(true);

    private Task ReadKvEventsAsync(CancellationToken cancellationToken) => EventReader.ReadAsync(
        _kvEvents!,
        KvEventJson.Deserialize,
        e =>
        {
            if (Router.ApplyEvent(e) == KvApplyResult.Gap)
            {
                _resyncSignal.Writer.TryWrite(true);
            }
        },
        Malformed,
        cancellationToken);

    private Task ReadLoadAsync(CancellationToken cancellationToken) => EventReader.ReadAsync(
        _loadMetrics,
        payload => JsonSerializer.Deserialize(payload, WorkerJsonContext.Default.WorkerLoad),
        load =>
        {
            if (load is not null)
            {
                Router.UpdateLoad(load);
            }
        },
        Malformed,
        cancellationToken);

    private void Malformed(string subject, Exception e)
    {
        Interlocked.Increment(ref _badEvents);
        Log.BadMessage(_logger, subject, e);
    }

    // Fetches a dump for every worker that needs one; retries failures every second.
    private async Task ResyncAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                foreach (RoutingTarget workerId in Router.Index.WorkersNeedingResync)
                {
                    await TryResyncAsync(workerId, cancellationToken).ConfigureAwait(false);
                }

                // A failed fetch, or a dump older than events already seen: try again in a while.
                bool failed = Router.Index.WorkersNeedingResync.Count > 0;

                using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                if (failed)
                {
                    wait.CancelAfter(ResyncRetry);
                }

                try
                {
                    await _resyncSignal.Reader.ReadAsync(wait.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task<bool> TryResyncAsync(RoutingTarget workerId, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (ReadOnlyMemory<byte> response in _dumpClient.StreamAsync(KvDumpRequest.Serialize(workerId.DpRank), workerId.WorkerId, cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                KvEventDump dump = KvEventJson.DeserializeDump(response.Span);
                if (dump.DpRank != workerId.DpRank)
                {
                    // A worker that does not know data-parallel ranks answers for its only engine: not this rank's cache.
                    Log.ResyncFailed(_logger, workerId, new InvalidDataException($"asked for the dump of rank {workerId.DpRank}, got rank {dump.DpRank}'s"));
                    return false;
                }

                Router.LoadDump(workerId, dump);
                Interlocked.Increment(ref _dumpsLoaded);
                Log.Resynced(_logger, workerId, dump.LastEventId, Router.Index.BlockCountOf(workerId));
                return true;
            }

            Log.ResyncFailed(_logger, workerId, null);
            return false;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log.ResyncFailed(_logger, workerId, e);
            return false;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 6111, Level = LogLevel.Information, Message = "Router: worker {WorkerId} joined")]
        public static partial void WorkerJoined(ILogger logger, RoutingTarget workerId);

        [LoggerMessage(EventId = 6112, Level = LogLevel.Information, Message = "Router: worker {WorkerId} left; purged")]
        public static partial void WorkerLeft(ILogger logger, RoutingTarget workerId);

        [LoggerMessage(EventId = 6113, Level = LogLevel.Debug, Message = "Router: worker {WorkerId} resynced from its dump at event {LastEventId} ({Blocks} blocks)")]
        public static partial void Resynced(ILogger logger, RoutingTarget workerId, ulong lastEventId, int blocks);

        [LoggerMessage(EventId = 6114, Level = LogLevel.Warning, Message = "Router: resync of worker {WorkerId} failed; retrying")]
        public static partial void ResyncFailed(ILogger logger, RoutingTarget workerId, Exception? exception);

        [LoggerMessage(EventId = 6115, Level = LogLevel.Warning, Message = "Router: ignored a malformed message on {Subject}")]
        public static partial void BadMessage(ILogger logger, string subject, Exception exception);
    }
}

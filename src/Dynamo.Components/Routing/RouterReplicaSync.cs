using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Routing;

/// <summary>
/// Shares one router replica's charges with the other replicas of the same worker endpoint (Routing/README.md,
/// "Router replicas"): publishes each of its <see cref="RouterChargeEvent"/>s on <see cref="SubjectFor"/> (one
/// plain subscription per replica, no queue group: every replica receives every event), applies the others',
/// ignores its own, and releases the charges of a replica that leaves discovery. Every
/// <see cref="KvRouterOptions.ReplicaHeartbeat"/> it sends the router's heartbeat (<see cref="KvRouter.Heartbeat"/>, which
/// also expires peer charges past their time to live). It answers the other replicas' <see cref="RouterChargeQuery"/>s on
/// <see cref="RouterServer.ChargesAddressFor"/>, and resyncs its charges of a replica, by the same queries, when it starts
/// (every replica listed then) and when a heartbeat of that replica disagrees.
/// </summary>
internal sealed partial class RouterReplicaSync : IAsyncDisposable
{
    /// <summary>Charge events waiting to be published; beyond it they are dropped and counted (the router never blocks).</summary>
    private const int OutboxCapacity = 65536;

    /// <summary>Decision ids per frame of an ids answer, and per charges query (a frame stays far below the 1 MiB payload limit).</summary>
    private const int IdsPerFrame = 16384;

    /// <summary>Block hashes per frame of a charges answer (at most about 21 bytes each in JSON).</summary>
    private const int HashesPerFrame = 16384;

    /// <summary>How long one query of a resync may take.</summary>
    private static readonly RequestOptions QueryOptions = RequestOptions.Default with { Deadline = TimeSpan.FromSeconds(30) };

    private readonly KvRouter _router;
    private readonly IEventPlane _events;
    private readonly string _subject;
    private readonly IEventSubscription _subscription;
    private readonly EndpointClient _replicas;
    private readonly IRequestPlane _requests;
    private readonly EndpointAddress _chargesAddress;
    private readonly long _id;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<Task, bool> _syncs = new();
    private readonly Channel<RouterChargeEvent> _outbox = Channel.CreateBounded<RouterChargeEvent>(
        new BoundedChannelOptions(OutboxCapacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _membershipGate = new();
    private readonly HashSet<long> _listed = [];
    private Task _loops = Task.CompletedTask;
    private long _published;
    private long _applied;
    private long _lost;
    private long _resyncs;
    private ServedEndpoint? _charges;

    private RouterReplicaSync(DistributedRuntime runtime, EndpointAddress workers, KvRouter router, string subject, IEventSubscription subscription, EndpointClient replicas, TimeProvider time, ILogger logger)
    {
        _router = router;
        _events = runtime.Events;
        _requests = runtime.Requests;
        _id = runtime.InstanceId;
        _chargesAddress = RouterServer.ChargesAddressFor(workers);
        _subject = subject;
        _subscription = subscription;
        _replicas = replicas;
        _time = time;
        _logger = logger;
    }

    /// <summary>Charge events this replica published.</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Other replicas' charge events applied here.</summary>
    public long Applied => Interlocked.Read(ref _applied);

    /// <summary>Charge events lost: not published (outbox full, publish failed), malformed, or dropped by the event plane.</summary>
    public long Lost => Interlocked.Read(ref _lost) + _subscription.Dropped;

    /// <summary>Resyncs with another replica completed (at start, and after a disagreeing heartbeat).</summary>
    public long Resyncs => Interlocked.Read(ref _resyncs);

    /// <summary>The subject the replicas of <paramref name="workers"/>' router share their charges on.</summary>
    public static string SubjectFor(EndpointAddress workers) => workers.EventSubject($"router_charges-{workers.Endpoint}");

    /// <summary>
    /// Subscribes to the replicas' charges for <paramref name="workers"/>, reports <paramref name="router"/>'s own as
    /// replica <see cref="DistributedRuntime.InstanceId"/>, answers the others' queries, and starts (in the background)
    /// a resync with every replica listed now, which charges here the decisions they made before this one subscribed.
    /// Call before the replica serves, so that no charge of a peer made after it is listed is missed.
    /// <paramref name="timeProvider"/> paces the heartbeats: the router's own.
    /// </summary>
    public static async Task<RouterReplicaSync> StartAsync(DistributedRuntime runtime, EndpointAddress workers, KvRouter router, ILogger logger, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(router);
        string subject = SubjectFor(workers);
        IEventSubscription subscription = await runtime.Events.SubscribeAsync(subject, cancellationToken).ConfigureAwait(false);
        EndpointClient replicas = await runtime.CreateClientAsync(RouterServer.AddressFor(workers), cancellationToken: cancellationToken).ConfigureAwait(false);
        var sync = new RouterReplicaSync(runtime, workers, router, subject, subscription, replicas, timeProvider ?? TimeProvider.System, logger);
        try
        {
            sync._charges = await runtime.ServeEndpointAsync(sync._chargesAddress, (_, payload, ct) => sync.AnswerAsync(payload, ct), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await sync.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        replicas.InstancesChanged += sync.SyncMembership;
        sync.SyncMembership();
        router.PeerOutOfStep += sync.Resync;
        router.ObserveCharges(runtime.InstanceId, sync.Enqueue);
        CancellationToken stop = sync._stop.Token;
        sync._loops = Task.WhenAll(
            Task.Run(() => sync.PublishAsync(stop), CancellationToken.None),
            Task.Run(() => sync.ApplyAsync(stop), CancellationToken.None),
            Task.Run(() => sync.HeartbeatAsync(stop), CancellationToken.None));
        foreach (InstanceRecord peer in replicas.Instances.Where(r => r.InstanceId != runtime.InstanceId))
        {
            sync.Resync(peer.InstanceId);
        }

        return sync;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        _router.ObserveCharges(0, null);
        _router.PeerOutOfStep -= Resync;
        _replicas.InstancesChanged -= SyncMembership;
        _outbox.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_charges is not null)
        {
            await _charges.DisposeAsync().ConfigureAwait(false);
        }

        await _subscription.DisposeAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll([_loops, .. _syncs.Keys]).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        await _replicas.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    // Under the router's gate: hand on, never wait.
    private void Enqueue(RouterChargeEvent charge)
    {
        if (!_outbox.Writer.TryWrite(charge))
        {
            Interlocked.Increment(ref _lost);
        }
    }

    // A replica listed before and gone now left (stopped, or its lease expired): its charges are released.
    private void SyncMembership()
    {
        lock (_membershipGate)
        {
            var now = new HashSet<long>(_replicas.Instances.Select(r => r.InstanceId));
            foreach (long gone in _listed.Where(id => !now.Contains(id)).ToArray())
            {
                _listed.Remove(gone);
                int released = _router.ForgetPeer(gone);
                Log.ReplicaLeft(_logger, EndpointAddress.FormatId(gone), released);
            }

            _listed.UnionWith(now);
        }
    }

    private async Task PublishAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (RouterChargeEvent charge in _outbox.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                try
                {
                    await _events.PublishAsync(_subject, charge.ToUtf8Json(), cancellationToken).ConfigureAwait(false);
                    Interlocked.Increment(ref _published);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Interlocked.Increment(ref _lost);
                    Log.PublishFailed(_logger, _subject, e);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task HeartbeatAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_router.Options.ReplicaHeartbeat, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                _router.Heartbeat();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    // A replica listed when this one started, or whose heartbeat disagreed: resync with it in the background.
    private void Resync(long peer)
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        Task sync = Task.Run(() => ResyncAsync(peer, _stop.Token), CancellationToken.None);
        _syncs.TryAdd(sync, true);
        _ = sync.ContinueWith(done => _syncs.TryRemove(done, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Asks <paramref name="peer"/> for its live decision ids, releases the charges of it held here that are not among them,
    /// asks for the charges of those not held here, and charges them (Routing/README.md, "Router replicas").
    /// </summary>
    private async Task ResyncAsync(long peer, CancellationToken cancellationToken)
    {
        if (!_router.BeginPeerSync(peer))
        {
            return;
        }

        try
        {
            var ids = new List<long>();
            long heartbeat = 0, last = 0;
            await foreach (RouterChargeSnapshot frame in QueryAsync(peer, new RouterChargeQuery(), cancellationToken).ConfigureAwait(false))
            {
                ids.AddRange(frame.DecisionIds ?? []);
                heartbeat = frame.Heartbeat;
                last = frame.LastDecisionId;
            }

            IReadOnlyList<long> missing = _router.ReconcilePeer(peer, heartbeat, last, ids);
            var charges = new List<RouterChargeEvent>(missing.Count);
            foreach (long[] batch in missing.Chunk(IdsPerFrame))
            {
                await foreach (RouterChargeSnapshot frame in QueryAsync(peer, new RouterChargeQuery { DecisionIds = batch }, cancellationToken).ConfigureAwait(false))
                {
                    charges.AddRange(frame.Charges ?? []);
                }
            }

            int charged = _router.EndPeerSync(peer, charges);
            Interlocked.Increment(ref _resyncs);
            Log.Resynced(_logger, EndpointAddress.FormatId(peer), ids.Count, charged);
        }
        catch (Exception e) when (e is RequestPlaneException or JsonException or OperationCanceledException)
        {
            _router.AbortPeerSync(peer);
            if (!cancellationToken.IsCancellationRequested)
            {
                Log.ResyncFailed(_logger, EndpointAddress.FormatId(peer), e.Message);
            }
        }
    }

    private async IAsyncEnumerable<RouterChargeSnapshot> QueryAsync(long peer, RouterChargeQuery query, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (ReadOnlyMemory<byte> frame in _requests.RequestStreamAsync(_chargesAddress.InstanceSubject(peer), query.ToUtf8Json(), QueryOptions.WithNewId(), cancellationToken).ConfigureAwait(false))
        {
            yield return RouterChargeSnapshot.Parse(frame.Span);
        }
    }

    /// <summary>Answers another replica's query: this router's live decision ids, or the charges of those it names, in frames.</summary>
    private async IAsyncEnumerable<ReadOnlyMemory<byte>> AnswerAsync(ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        RouterChargeQuery query;
        try
        {
            query = RouterChargeQuery.Parse(payload.Span);
        }
        catch (JsonException e)
        {
            throw new EndpointException(RouterServer.InvalidRequestCode, $"malformed router charge query: {e.Message}");
        }

        if (query.Version != 1)
        {
            throw new EndpointException("unsupported_version", $"router charge query version {query.Version} is not supported (this router speaks 1)");
        }

        await Task.CompletedTask.ConfigureAwait(false);
        if (query.DecisionIds is null)
        {
            (long heartbeat, long last, long[] ids) = _router.LiveDecisions();
            int i = 0;
            do
            {
                int count = Math.Min(IdsPerFrame, ids.Length - i);
                yield return new RouterChargeSnapshot { RouterId = _id, Heartbeat = heartbeat, LastDecisionId = last, DecisionIds = ids[i..(i + count)] }.ToUtf8Json();
                i += count;
            }
            while (i < ids.Length);
            yield break;
        }

        var batch = new List<RouterChargeEvent>();
        int hashes = 0;
        foreach (long[] ids in query.DecisionIds.Chunk(256))
        {
            cancellationToken.ThrowIfCancellationRequested();
            foreach (RouterChargeEvent charge in _router.LiveCharges(ids))
            {
                int count = charge.BlockHashes?.Count ?? 0;
                if (batch.Count > 0 && hashes + count > HashesPerFrame)
                {
                    yield return new RouterChargeSnapshot { RouterId = _id, Charges = batch }.ToUtf8Json();
                    batch = [];
                    hashes = 0;
                }

                batch.Add(charge);
                hashes += count;
            }
        }

        yield return new RouterChargeSnapshot { RouterId = _id, Charges = batch }.ToUtf8Json();
    }

    private Task ApplyAsync(CancellationToken cancellationToken) => EventReader.ReadAsync(
        _subscription,
        RouterChargeEvent.Parse,
        charge =>
        {
            if (_router.ApplyPeerCharge(charge))
            {
                Interlocked.Increment(ref _applied);
            }
        },
        (subject, e) =>
        {
            Interlocked.Increment(ref _lost);
            Log.BadCharge(_logger, subject, e);
        },
        cancellationToken);

    private static partial class Log
    {
        [LoggerMessage(EventId = 6131, Level = LogLevel.Information, Message = "Router: replica {ReplicaId} left; released its {Charges} charges")]
        public static partial void ReplicaLeft(ILogger logger, string replicaId, int charges);

        [LoggerMessage(EventId = 6132, Level = LogLevel.Warning, Message = "Router: publishing a charge on {Subject} failed; the other replicas miss it")]
        public static partial void PublishFailed(ILogger logger, string subject, Exception exception);

        [LoggerMessage(EventId = 6133, Level = LogLevel.Warning, Message = "Router: ignored a malformed charge event on {Subject}")]
        public static partial void BadCharge(ILogger logger, string subject, Exception exception);

        [LoggerMessage(EventId = 6134, Level = LogLevel.Information, Message = "Router: resynced with replica {ReplicaId}: {Live} decisions live there, {Charged} of them newly charged here")]
        public static partial void Resynced(ILogger logger, string replicaId, int live, int charged);

        [LoggerMessage(EventId = 6135, Level = LogLevel.Warning, Message = "Router: resync with replica {ReplicaId} failed ({Reason}); its next heartbeat that disagrees tries again")]
        public static partial void ResyncFailed(ILogger logger, string replicaId, string reason);
    }
}

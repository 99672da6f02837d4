using System.Threading.Channels;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.EventPlane;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Routing;

/// <summary>
/// Shares one router replica's charges with the other replicas of the same worker endpoint (Routing/README.md,
/// "Router replicas"): publishes each of its <see cref="RouterChargeEvent"/>s on <see cref="SubjectFor"/> (one
/// plain subscription per replica, no queue group: every replica receives every event), applies the others',
/// ignores its own, and releases the charges of a replica that leaves discovery.
/// </summary>
internal sealed partial class RouterReplicaSync : IAsyncDisposable
{
    /// <summary>Charge events waiting to be published; beyond it they are dropped and counted (the router never blocks).</summary>
    private const int OutboxCapacity = 65536;

    private readonly KvRouter _router;
    private readonly IEventPlane _events;
    private readonly string _subject;
    private readonly IEventSubscription _subscription;
    private readonly EndpointClient _replicas;
    private readonly ILogger _logger;
    private readonly Channel<RouterChargeEvent> _outbox = Channel.CreateBounded<RouterChargeEvent>(
        new BoundedChannelOptions(OutboxCapacity) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _membershipGate = new();
    private readonly HashSet<long> _listed = [];
    private Task _loops = Task.CompletedTask;
    private long _published;
    private long _applied;
    private long _lost;

    private RouterReplicaSync(KvRouter router, IEventPlane events, string subject, IEventSubscription subscription, EndpointClient replicas, ILogger logger)
    {
        _router = router;
        _events = events;
        _subject = subject;
        _subscription = subscription;
        _replicas = replicas;
        _logger = logger;
    }

    /// <summary>Charge events this replica published.</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Other replicas' charge events applied here.</summary>
    public long Applied => Interlocked.Read(ref _applied);

    /// <summary>Charge events lost: not published (outbox full, publish failed), malformed, or dropped by the event plane.</summary>
    public long Lost => Interlocked.Read(ref _lost) + _subscription.Dropped;

    /// <summary>The subject the replicas of <paramref name="workers"/>' router share their charges on.</summary>
    public static string SubjectFor(EndpointAddress workers) => workers.EventSubject($"router_charges-{workers.Endpoint}");

    /// <summary>
    /// Subscribes to the replicas' charges for <paramref name="workers"/> and reports <paramref name="router"/>'s own as
    /// replica <see cref="DistributedRuntime.InstanceId"/>. Call before the replica serves, so that no charge of a peer
    /// made after it is listed is missed.
    /// </summary>
    public static async Task<RouterReplicaSync> StartAsync(DistributedRuntime runtime, EndpointAddress workers, KvRouter router, ILogger logger, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        string subject = SubjectFor(workers);
        IEventSubscription subscription = await runtime.Events.SubscribeAsync(subject, cancellationToken).ConfigureAwait(false);
        EndpointClient replicas = await runtime.CreateClientAsync(RouterServer.AddressFor(workers), cancellationToken: cancellationToken).ConfigureAwait(false);
        var sync = new RouterReplicaSync(router, runtime.Events, subject, subscription, replicas, logger);
        replicas.InstancesChanged += sync.SyncMembership;
        sync.SyncMembership();
        router.ObserveCharges(runtime.InstanceId, sync.Enqueue);
        CancellationToken stop = sync._stop.Token;
        sync._loops = Task.WhenAll(
            Task.Run(() => sync.PublishAsync(stop), CancellationToken.None),
            Task.Run(() => sync.ApplyAsync(stop), CancellationToken.None));
        return sync;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        _router.ObserveCharges(0, null);
        _replicas.InstancesChanged -= SyncMembership;
        _outbox.Writer.TryComplete();
        await _stop.CancelAsync().ConfigureAwait(false);
        await _subscription.DisposeAsync().ConfigureAwait(false);
        try
        {
            await _loops.ConfigureAwait(false);
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
    }
}

using System.Buffers;
using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Dynamo.Llm.Routing;

/// <summary>
/// Router replicas (Routing/README.md, "Router replicas"): this router's own charges go out through
/// <see cref="ObserveCharges"/>, the other replicas' come in through <see cref="ApplyPeerCharge"/> and charge
/// the same workers here, so every replica counts the load of every decision. <see cref="Heartbeat"/> announces the own
/// live decisions (a count and a digest) and releases peer charges past their time to live; a peer whose heartbeat
/// disagrees raises <see cref="PeerOutOfStep"/>, answered by a resync (<see cref="BeginPeerSync"/>,
/// <see cref="ReconcilePeer"/>, <see cref="EndPeerSync"/>), as a replica that joins does with every peer.
/// </summary>
public sealed partial class KvRouter
{
    private readonly Dictionary<long, PeerReplica> _peers = [];
    private readonly Dictionary<long, RoutingDecision> _ownCharges = [];
    private Action<RouterChargeEvent>? _chargeObserver;
    private long _replicaId;
    private long _nextChargeId;
    private long _heartbeats;
    private ulong _ownDigest;
    private int _peerChargeCount;

    /// <summary>
    /// Raised (outside the router's lock) with a replica's id when its heartbeat disagrees with the charges of it held
    /// here (an event of it was lost): resync with it (RouterReplicaSync does).
    /// </summary>
    public event Action<long>? PeerOutOfStep;

    /// <summary>
    /// Reports every charge and release of this router's own decisions to <paramref name="observer"/>, as
    /// <see cref="RouterChargeEvent"/>s of replica <paramref name="replicaId"/>, in the order they happen. Called under the
    /// router's gate: the observer must only hand the event on (e.g. to a bounded channel). Null stops the reports.
    /// </summary>
    public void ObserveCharges(long replicaId, Action<RouterChargeEvent>? observer)
    {
        lock (_gate)
        {
            _replicaId = replicaId;
            _chargeObserver = observer;
        }
    }

    /// <summary>The digest of one decision id (a replica's heartbeat carries the XOR of its live decisions' digests).</summary>
    public static ulong DigestOf(long decisionId)
    {
        // SplitMix64's finalizer: neighbouring ids give unrelated bits, so an XOR of them hides no lost id.
        ulong z = unchecked((ulong)decisionId + 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }

    /// <summary>
    /// Applies another replica's charge event: <see cref="RouterChargeKind.Charged"/> charges its worker here as if this
    /// router had decided it (prefill tokens, prompt blocks in flight, one request), <see cref="RouterChargeKind.FirstToken"/>
    /// and <see cref="RouterChargeKind.Released"/> release it (a completed one enters the recent-prefix window), and
    /// <see cref="RouterChargeKind.Live"/> compares its heartbeat with the charges of it held here (raising
    /// <see cref="PeerOutOfStep"/> when they disagree). False when ignored: this router's own event, a worker it does not
    /// know, a decision it never saw charged, a repeat, or a heartbeat that disagrees or is not compared.
    /// </summary>
    public bool ApplyPeerCharge(RouterChargeEvent charge)
    {
        ArgumentNullException.ThrowIfNull(charge);
        bool outOfStep = false;
        bool applied;
        lock (_gate)
        {
            if (charge.RouterId == _replicaId && _chargeObserver is not null)
            {
                return false;
            }

            PeerReplica peer = PeerOf(charge.RouterId);
            applied = charge.Kind switch
            {
                RouterChargeKind.Charged => ChargePeer(peer, charge, _time.GetTimestamp(), rate: true),
                RouterChargeKind.FirstToken => PeerFirstToken(peer, charge.DecisionId),
                RouterChargeKind.Released => ReleasePeer(peer, charge),
                RouterChargeKind.Live => PeerHeartbeat(peer, charge, out outOfStep),
                _ => false,
            };
        }

        if (outOfStep)
        {
            PeerOutOfStep?.Invoke(charge.RouterId);
        }

        return applied;
    }

    /// <summary>
    /// Announces this router's live decisions to its peers (a <see cref="RouterChargeKind.Live"/> event through the
    /// observer, in order with the charges: O(1), a count and a digest), and releases every peer charge unconfirmed for
    /// <see cref="KvRouterOptions.PeerChargeTtl"/>. Call every <see cref="KvRouterOptions.ReplicaHeartbeat"/>. Returns
    /// how many peer charges expired.
    /// </summary>
    public int Heartbeat()
    {
        lock (_gate)
        {
            if (_chargeObserver is { } observer)
            {
                observer(new RouterChargeEvent
                {
                    RouterId = _replicaId,
                    DecisionId = _nextChargeId,
                    Kind = RouterChargeKind.Live,
                    LiveCount = _ownCharges.Count,
                    LiveDigest = _ownDigest,
                    Heartbeat = ++_heartbeats,
                });
            }

            long now = _time.GetTimestamp();
            int expired = 0;
            List<long>? stale = null;
            foreach ((long routerId, PeerReplica peer) in _peers)
            {
                if (peer.ConfirmedAt is long confirmed && _time.GetElapsedTime(confirmed, now) < Options.PeerChargeTtl)
                {
                    continue; // everything held at its last agreeing heartbeat was live then, and everything since is younger
                }

                stale?.Clear();
                foreach ((long id, PeerCharge held) in peer.Charges)
                {
                    if (_time.GetElapsedTime(held.ChargedAt, now) >= Options.PeerChargeTtl)
                    {
                        (stale ??= []).Add(id);
                    }
                }

                if (stale is not { Count: > 0 })
                {
                    continue;
                }

                foreach (long id in stale)
                {
                    expired += DropPeer(peer, id);
                }

                Log.PeerChargesExpired(_logger, routerId.ToString("x", CultureInfo.InvariantCulture), stale.Count, Options.PeerChargeTtl.TotalSeconds);
            }

            if (expired > 0)
            {
                Pump();
            }

            return expired;
        }
    }

    /// <summary>
    /// This router's live decisions' ids, with its last heartbeat and decision id: the answer to a peer's ids query
    /// (<see cref="RouterChargeQuery"/>). Taken under the gate, in order with the charge events.
    /// </summary>
    public (long Heartbeat, long LastDecisionId, long[] DecisionIds) LiveDecisions()
    {
        lock (_gate)
        {
            return (_heartbeats, _nextChargeId, [.. _ownCharges.Keys]);
        }
    }

    /// <summary>
    /// The charges of those of <paramref name="decisionIds"/> that are live here, as <see cref="RouterChargeKind.Charged"/>
    /// events (prefill tokens 0 once past the first token): the answer to a peer's charges query. Ask in batches: each
    /// call holds the router's gate while it copies.
    /// </summary>
    public IReadOnlyList<RouterChargeEvent> LiveCharges(IEnumerable<long> decisionIds)
    {
        ArgumentNullException.ThrowIfNull(decisionIds);
        var charges = new List<RouterChargeEvent>();
        lock (_gate)
        {
            foreach (long id in decisionIds)
            {
                if (_ownCharges.TryGetValue(id, out RoutingDecision? decision))
                {
                    charges.Add(EventOf(decision, RouterChargeKind.Charged) with
                    {
                        PrefillTokens = decision.State == RoutingDecision.DecisionState.Prefill ? decision.ChargedPrefillTokens : 0,
                    });
                }
            }
        }

        return charges;
    }

    /// <summary>
    /// Starts a resync with replica <paramref name="routerId"/> (it joined before this router, or its heartbeat disagreed):
    /// from now until <see cref="EndPeerSync"/> or <see cref="AbortPeerSync"/>, what its events say of decisions not held
    /// here is kept, and its heartbeats are not compared. False when one already runs.
    /// </summary>
    public bool BeginPeerSync(long routerId)
    {
        lock (_gate)
        {
            PeerReplica peer = PeerOf(routerId);
            if (peer.Pending is not null)
            {
                return false;
            }

            peer.Pending = [];
            return true;
        }
    }

    /// <summary>
    /// The first answer of a resync: replica <paramref name="routerId"/>'s live decision ids at its heartbeat
    /// <paramref name="heartbeat"/> and last decision <paramref name="lastDecisionId"/>. Releases the charges of it held
    /// here that are not among them (their release was lost); returns the ids among them held neither here nor released
    /// since, whose charges to ask for and pass to <see cref="EndPeerSync"/>.
    /// </summary>
    public IReadOnlyList<long> ReconcilePeer(long routerId, long heartbeat, long lastDecisionId, IReadOnlyCollection<long> liveIds)
    {
        ArgumentNullException.ThrowIfNull(liveIds);
        var live = liveIds as HashSet<long> ?? [.. liveIds];
        lock (_gate)
        {
            if (!_peers.TryGetValue(routerId, out PeerReplica? peer) || peer.Pending is not { } pending)
            {
                return []; // it left meanwhile (ForgetPeer), or no resync runs
            }

            peer.Syncing = (heartbeat, lastDecisionId);
            long[] gone = [.. peer.Charges.Keys.Where(id => id <= lastDecisionId && !live.Contains(id))];
            int dropped = 0;
            foreach (long id in gone)
            {
                dropped += DropPeer(peer, id);
            }

            if (gone.Length > 0)
            {
                Log.PeerChargesNotLive(_logger, routerId.ToString("x", CultureInfo.InvariantCulture), gone.Length);
                Pump();
            }

            return [.. live.Where(id => !peer.Charges.ContainsKey(id) && !(pending.TryGetValue(id, out RouterChargeKind said) && said == RouterChargeKind.Released)).Order()];
        }
    }

    /// <summary>
    /// Ends a resync with replica <paramref name="routerId"/>: charges here <paramref name="charges"/> (its answer for the
    /// ids <see cref="ReconcilePeer"/> returned) but those released meanwhile and those already held (a past-first-token
    /// one meanwhile charges no prefill), and from then on compares its heartbeats after the one the resync covered.
    /// Returns how many were charged.
    /// </summary>
    public int EndPeerSync(long routerId, IEnumerable<RouterChargeEvent> charges)
    {
        ArgumentNullException.ThrowIfNull(charges);
        lock (_gate)
        {
            if (!_peers.TryGetValue(routerId, out PeerReplica? peer) || peer.Pending is not { } pending)
            {
                return 0; // it left meanwhile (ForgetPeer): nothing of it is to be charged
            }

            long now = _time.GetTimestamp();
            int charged = 0;
            foreach (RouterChargeEvent charge in charges)
            {
                if (charge.Kind != RouterChargeKind.Charged || charge.RouterId != routerId)
                {
                    continue;
                }

                pending.TryGetValue(charge.DecisionId, out RouterChargeKind said);
                if (said == RouterChargeKind.Released)
                {
                    continue;
                }

                RouterChargeEvent current = said == RouterChargeKind.FirstToken ? charge with { PrefillTokens = 0 } : charge;
                if (ChargePeer(peer, current, now, rate: false))
                {
                    charged++;
                }
            }

            peer.Pending = null;
            peer.SyncedHeartbeat = peer.Syncing.Heartbeat;
            peer.ConfirmedAt = now;
            if (charged > 0)
            {
                Pump();
            }

            return charged;
        }
    }

    /// <summary>Gives up a resync with replica <paramref name="routerId"/> (it did not answer): its heartbeats are compared again.</summary>
    public void AbortPeerSync(long routerId)
    {
        lock (_gate)
        {
            if (_peers.TryGetValue(routerId, out PeerReplica? peer))
            {
                peer.Pending = null;
            }
        }
    }

    /// <summary>
    /// Releases every charge of replica <paramref name="routerId"/> (it left: stopped, crashed, its lease expired).
    /// Returns how many were released.
    /// </summary>
    public int ForgetPeer(long routerId)
    {
        lock (_gate)
        {
            if (!_peers.Remove(routerId, out PeerReplica? peer))
            {
                return 0;
            }

            int released = 0;
            foreach (PeerCharge held in peer.Charges.Values)
            {
                if (held.Decision is { } decision)
                {
                    _peerChargeCount--;
                    Release(decision);
                    released++;
                }
            }

            if (released > 0)
            {
                Pump();
            }

            return released;
        }
    }

    /// <summary>The replicas whose charges this router holds now.</summary>
    public IReadOnlyList<long> Peers
    {
        get
        {
            lock (_gate)
            {
                return [.. _peers.Where(p => p.Value.Charges.Values.Any(c => c.Decision is not null)).Select(p => p.Key).Order()];
            }
        }
    }

    // Under _gate: the charge of one decision on its worker (own or a peer's); rate: counted as blocks sent now.
    private void Charge(KvWorkerState worker, ReadOnlySpan<ulong> hashes, int promptTokens, long prefillTokens, bool rate = true)
    {
        worker.ActivePrefillTokens += prefillTokens;
        if (rate)
        {
            worker.Retention.Added((prefillTokens + Options.BlockSize - 1) / Options.BlockSize);
        }

        worker.InFlight++;
        _counters.InFlight++;
        _ledger.Charge(worker, hashes);
        if (promptTokens % Options.BlockSize != 0)
        {
            worker.PartialBlocks++;
        }
    }

    private PeerReplica PeerOf(long routerId)
    {
        if (!_peers.TryGetValue(routerId, out PeerReplica? peer))
        {
            peer = new PeerReplica();
            _peers.Add(routerId, peer);
        }

        return peer;
    }

    // Under _gate. rate: false for a charge learnt by a resync (its blocks were sent to the worker before, not now).
    private bool ChargePeer(PeerReplica peer, RouterChargeEvent charge, long now, bool rate)
    {
        if (peer.Charges.ContainsKey(charge.DecisionId))
        {
            return false;
        }

        if (!_workers.TryGet(new RoutingTarget(charge.WorkerId, charge.DpRank), out KvWorkerState? worker))
        {
            peer.Add(charge.DecisionId, new PeerCharge(null, now));
            return false;
        }

        IReadOnlyList<ulong> source = charge.BlockHashes ?? [];
        ulong[] hashes = ArrayPool<ulong>.Shared.Rent(Math.Max(source.Count, 1));
        for (int i = 0; i < source.Count; i++)
        {
            hashes[i] = source[i];
        }

        long prefill = Math.Clamp(charge.PrefillTokens, 0, charge.PromptTokens);
        Charge(worker, hashes.AsSpan(0, source.Count), charge.PromptTokens, prefill, rate);

        // The peer charged the prompt less its predicted overlap (prompt - overlap x block size), so its predicted overlap
        // is known here, for the correction of the eviction estimate at its release (its indexed overlap is not).
        int overlap = (int)((charge.PromptTokens - prefill) / Options.BlockSize);
        var decision = new RoutingDecision(this, worker, charge.PromptTokens, overlap, 0, 0, hashes, source.Count, prefill, Options.BlockSize);
        worker.Decisions.Add(decision);
        peer.Add(charge.DecisionId, new PeerCharge(decision, now, rate));
        _peerChargeCount++;
        return true;
    }

    private bool PeerFirstToken(PeerReplica peer, long decisionId)
    {
        if (!peer.Charges.TryGetValue(decisionId, out PeerCharge held))
        {
            if (peer.Pending is { } pending)
            {
                pending.TryAdd(decisionId, RouterChargeKind.FirstToken);
            }

            return false;
        }

        if (held.Decision is not { State: RoutingDecision.DecisionState.Prefill } started)
        {
            return false;
        }

        started.State = RoutingDecision.DecisionState.Decoding;
        if (!started.Worker.Removed)
        {
            started.Worker.ActivePrefillTokens -= started.ChargedPrefillTokens;
            Pump();
        }

        return true;
    }

    private bool ReleasePeer(PeerReplica peer, RouterChargeEvent released)
    {
        if (!peer.Remove(released.DecisionId, out PeerCharge held))
        {
            if (peer.Pending is { } pending)
            {
                pending[released.DecisionId] = RouterChargeKind.Released;
            }

            return false;
        }

        if (held.Decision is not { } ended)
        {
            return false;
        }

        _peerChargeCount--;
        Release(ended, released.Completed);
        if (held.Rated && !ended.Worker.Removed)
        {
            // Its blocks counted as sent here when it was charged: its outcome corrects them as an own decision's does.
            // The accuracy check stays with the replica that decided (the index it judged by is not this one).
            Retained(ended, released.CachedTokens is int cached && cached >= 0 ? cached : null, released.OutputTokens is int output && output >= 0 ? output : null);
        }

        Pump();
        return true;
    }

    private bool PeerHeartbeat(PeerReplica peer, RouterChargeEvent heartbeat, out bool outOfStep)
    {
        // A resync under way, or a heartbeat older than the state the last one took: nothing to compare.
        outOfStep = false;
        if (peer.Pending is not null || heartbeat.Heartbeat <= peer.SyncedHeartbeat)
        {
            return false;
        }

        if (peer.Charges.Count == heartbeat.LiveCount && peer.Digest == heartbeat.LiveDigest)
        {
            peer.ConfirmedAt = _time.GetTimestamp();
            return true;
        }

        outOfStep = true;
        return false;
    }

    // Under _gate: releases a peer charge whose release never came. 1 when it charged something here.
    private int DropPeer(PeerReplica peer, long decisionId)
    {
        if (!peer.Remove(decisionId, out PeerCharge held) || held.Decision is not { } decision)
        {
            return 0;
        }

        _peerChargeCount--;
        _counters.PeerChargesDropped++;
        Release(decision);
        return 1;
    }

    // Under _gate: an own decision's charge, for the observer (a decision id of 0 is a peer's, or none observed).
    private void Published(RoutingDecision decision, RouterChargeKind kind, bool completed = false, int? cachedTokens = null, int? outputTokens = null)
    {
        if (decision.ChargeId == 0)
        {
            return;
        }

        if (kind == RouterChargeKind.Charged)
        {
            _ownCharges.Add(decision.ChargeId, decision);
            _ownDigest ^= DigestOf(decision.ChargeId);
        }
        else if (kind == RouterChargeKind.Released && _ownCharges.Remove(decision.ChargeId))
        {
            _ownDigest ^= DigestOf(decision.ChargeId);
        }

        if (_chargeObserver is { } observer)
        {
            observer(EventOf(decision, kind, completed, cachedTokens, outputTokens));
        }
    }

    private RouterChargeEvent EventOf(RoutingDecision decision, RouterChargeKind kind, bool completed = false, int? cachedTokens = null, int? outputTokens = null) => new()
    {
        RouterId = _replicaId,
        DecisionId = decision.ChargeId,
        Kind = kind,
        WorkerId = decision.Worker.WorkerId,
        DpRank = decision.Worker.Target.DpRank,
        PromptTokens = kind == RouterChargeKind.Charged ? decision.PromptTokens : 0,
        PrefillTokens = kind == RouterChargeKind.Charged ? decision.ChargedPrefillTokens : 0,
        BlockHashes = kind == RouterChargeKind.Charged ? decision.Hashes.AsSpan(0, decision.HashCount).ToArray() : null,
        Completed = completed,
        CachedTokens = kind == RouterChargeKind.Released ? cachedTokens : null,
        OutputTokens = kind == RouterChargeKind.Released ? outputTokens : null,
    };

    private static partial class Log
    {
        [LoggerMessage(EventId = 6104, Level = LogLevel.Warning, Message = "Router replica {ReplicaId}: released {Charges} of its charges that no release or heartbeat confirmed for {Ttl} s (--router-peer-charge-ttl)")]
        public static partial void PeerChargesExpired(ILogger logger, string replicaId, int charges, double ttl);

        [LoggerMessage(EventId = 6105, Level = LogLevel.Information, Message = "Router replica {ReplicaId}: released {Charges} of its charges that it no longer holds live (their release was lost)")]
        public static partial void PeerChargesNotLive(ILogger logger, string replicaId, int charges);
    }
}

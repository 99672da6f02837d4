using System.Buffers;

namespace Dynamo.Llm.Routing;

/// <summary>
/// Router replicas (Routing/README.md, "Router replicas"): this router's own charges go out through
/// <see cref="ObserveCharges"/>, the other replicas' come in through <see cref="ApplyPeerCharge"/> and charge
/// the same workers here, so every replica counts the load of every decision.
/// </summary>
public sealed partial class KvRouter
{
    private readonly Dictionary<(long Router, long Decision), RoutingDecision> _peerCharges = [];
    private Action<RouterChargeEvent>? _chargeObserver;
    private long _replicaId;
    private long _nextChargeId;

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

    /// <summary>
    /// Applies another replica's charge event: <see cref="RouterChargeKind.Charged"/> charges its worker here as if this
    /// router had decided it (prefill tokens, prompt blocks in flight, one request), <see cref="RouterChargeKind.FirstToken"/>
    /// and <see cref="RouterChargeKind.Released"/> release it (a completed one enters the recent-prefix window). False
    /// when ignored: this router's own event, a worker it does not know, a decision it never saw charged, or a repeat.
    /// </summary>
    public bool ApplyPeerCharge(RouterChargeEvent charge)
    {
        ArgumentNullException.ThrowIfNull(charge);
        lock (_gate)
        {
            if (charge.RouterId == _replicaId && _chargeObserver is not null)
            {
                return false;
            }

            var key = (charge.RouterId, charge.DecisionId);
            switch (charge.Kind)
            {
                case RouterChargeKind.Charged:
                    if (_peerCharges.ContainsKey(key) || !_workers.TryGet(new RoutingTarget(charge.WorkerId, charge.DpRank), out KvWorkerState? worker))
                    {
                        return false;
                    }

                    IReadOnlyList<ulong> source = charge.BlockHashes ?? [];
                    ulong[] hashes = ArrayPool<ulong>.Shared.Rent(Math.Max(source.Count, 1));
                    for (int i = 0; i < source.Count; i++)
                    {
                        hashes[i] = source[i];
                    }

                    long prefill = Math.Clamp(charge.PrefillTokens, 0, charge.PromptTokens);
                    Charge(worker, hashes.AsSpan(0, source.Count), charge.PromptTokens, prefill);
                    var decision = new RoutingDecision(this, worker, charge.PromptTokens, 0, 0, 0, hashes, source.Count, prefill, Options.BlockSize);
                    worker.Decisions.Add(decision);
                    _peerCharges[key] = decision;
                    return true;
                case RouterChargeKind.FirstToken:
                    if (!_peerCharges.TryGetValue(key, out RoutingDecision? started) || started.State != RoutingDecision.DecisionState.Prefill)
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
                case RouterChargeKind.Released:
                    if (!_peerCharges.Remove(key, out RoutingDecision? ended))
                    {
                        return false;
                    }

                    Release(ended, charge.Completed);
                    Pump();
                    return true;
                default:
                    return false;
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
            (long, long)[] keys = [.. _peerCharges.Keys.Where(k => k.Router == routerId)];
            foreach ((long, long) key in keys)
            {
                _peerCharges.Remove(key, out RoutingDecision? decision);
                Release(decision!);
            }

            if (keys.Length > 0)
            {
                Pump();
            }

            return keys.Length;
        }
    }

    /// <summary>The replicas whose charges this router holds now.</summary>
    public IReadOnlyList<long> Peers
    {
        get
        {
            lock (_gate)
            {
                return [.. _peerCharges.Keys.Select(k => k.Router).Distinct().Order()];
            }
        }
    }

    // Under _gate: the charge of one decision on its worker (own or a peer's).
    private void Charge(KvWorkerState worker, ReadOnlySpan<ulong> hashes, int promptTokens, long prefillTokens)
    {
        worker.ActivePrefillTokens += prefillTokens;
        worker.Retention.Added((prefillTokens + Options.BlockSize - 1) / Options.BlockSize);
        worker.InFlight++;
        _counters.InFlight++;
        _ledger.Charge(worker, hashes);
        if (promptTokens % Options.BlockSize != 0)
        {
            worker.PartialBlocks++;
        }
    }

    // Under _gate: an own decision's charge, for the observer (a decision id of 0 is a peer's, or none observed).
    private void Published(RoutingDecision decision, RouterChargeKind kind, bool completed = false)
    {
        if (decision.ChargeId == 0 || _chargeObserver is not { } observer)
        {
            return;
        }

        observer(new RouterChargeEvent
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
        });
    }
}

namespace Dynamo.Llm.Routing;

/// <summary>
/// Another router replica as a <see cref="KvRouter"/> follows it (Routing/README.md, "Router replicas"): the decisions of
/// it that the router holds, with the count and digest its heartbeats are compared with, and the state of a resync with it.
/// Not thread-safe: the router's gate guards it.
/// </summary>
internal sealed class PeerReplica
{
    /// <summary>Its decisions held here, by decision id.</summary>
    public Dictionary<long, PeerCharge> Charges { get; } = [];

    /// <summary>The XOR of <see cref="KvRouter.DigestOf"/> over <see cref="Charges"/>' ids.</summary>
    public ulong Digest { get; private set; }

    /// <summary>When a heartbeat of it last agreed with <see cref="Charges"/>, or a resync ended (null: never): every charge held then was live.</summary>
    public long? ConfirmedAt { get; set; }

    /// <summary>Its last heartbeat a resync covered: older heartbeats, still on their way, are not compared.</summary>
    public long SyncedHeartbeat { get; set; }

    /// <summary>
    /// While a resync with it runs: what its events said meanwhile of decisions not held here (released, or past their
    /// first token), so that the resync's answer, taken earlier, does not bring them back. Null when none runs.
    /// </summary>
    public Dictionary<long, RouterChargeKind>? Pending { get; set; }

    /// <summary>The heartbeat and last decision id of the replica's answer in the resync under way.</summary>
    public (long Heartbeat, long LastDecision) Syncing { get; set; }

    public void Add(long id, PeerCharge charge)
    {
        Charges.Add(id, charge);
        Digest ^= KvRouter.DigestOf(id);
    }

    public bool Remove(long id, out PeerCharge charge)
    {
        if (!Charges.Remove(id, out charge))
        {
            return false;
        }

        Digest ^= KvRouter.DigestOf(id);
        return true;
    }
}

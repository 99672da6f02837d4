using Dynamo.Load.Reports;

namespace Dynamo.Load.Simulation;

/// <summary>
/// Follow-up turns of a simulation (<see cref="FollowUpTracker"/>): how many, how many were routed to a worker that still
/// cached their prefix, how many found the previous turn's worker still caching it (whatever the router chose), the
/// prefix every prompt shares (blocks) and the gaps between a turn's end and its follow-up's dispatch (seconds).
/// </summary>
internal readonly record struct FollowUpSummary(int Count, int OnPrefixHolder, int HolderKept, int SharedBlocks, LatencySummary Gap)
{
    /// <summary>Follow-ups routed to a worker that still cached their prefix, of all follow-ups.</summary>
    public double OnPrefixHolderShare => Count == 0 ? 0 : (double)OnPrefixHolder / Count;

    /// <summary>Follow-ups whose previous turn's worker still cached the prefix when they were routed, of all follow-ups.</summary>
    public double HolderKeptShare => Count == 0 ? 0 : (double)HolderKept / Count;
}

using System.Globalization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// What the KV router chooses: a worker instance and one of its data-parallel ranks (a worker started with
/// <c>--dp-size N</c> runs N engine replicas, each with its own KV cache, queue and load). A worker with one engine
/// is its rank 0, which a worker id converts to.
/// </summary>
/// <param name="WorkerId">The worker's instance id (what the request plane addresses).</param>
/// <param name="DpRank">The rank within the worker, from 0.</param>
public readonly record struct RoutingTarget(long WorkerId, int DpRank = 0) : IComparable<RoutingTarget>
{
    /// <summary>A worker with one engine: its rank 0.</summary>
    public static implicit operator RoutingTarget(long workerId) => new(workerId);

    /// <inheritdoc/>
    public int CompareTo(RoutingTarget other)
    {
        int byWorker = WorkerId.CompareTo(other.WorkerId);
        return byWorker != 0 ? byWorker : DpRank.CompareTo(other.DpRank);
    }

    /// <summary>The worker id in hex (as logs and discovery write it), with "/dpR" for a rank other than 0.</summary>
    public override string ToString() =>
        DpRank == 0 ? WorkerId.ToString("x", CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{WorkerId:x}/dp{DpRank}");
}

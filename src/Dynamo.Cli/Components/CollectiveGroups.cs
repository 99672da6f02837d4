using System.Text;
using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Cli.Components;

/// <summary>
/// Forms a tensor-parallel worker's group from its settings (<see cref="NetworkCollectives"/>: shared memory among
/// the ranks of a node, TCP between nodes); the ranks must agree on the model's fingerprint and the shard layout.
/// </summary>
internal static class CollectiveGroups
{
    public static async Task<ICollectiveGroup> JoinAsync(TensorParallelSettings tp, string initAddress, string fingerprint, string layout, CancellationToken cancellationToken)
    {
        string agreed = $"model {fingerprint}; {layout}";
        var member = new CollectiveMember(tp.Rank, tp.Size, initAddress, new CollectiveAgreement(Encoding.UTF8.GetBytes(agreed), agreed))
        {
            NodeCount = tp.Nodes,
            NodeRank = tp.NodeRank,
        };
        try
        {
            return await NetworkCollectives.JoinAsync(member, CollectiveGroupOptions.Default with
            {
                Transport = CollectiveGroupOptions.ParseTransport(tp.Transport),
                StartTimeout = tp.Timeout,
                OperationTimeout = tp.RankTimeout,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CollectiveException or ArgumentException)
        {
            throw new CliUsageException(e.Message);
        }
    }
}

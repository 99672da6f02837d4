using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Cli.Components;

/// <summary>Forms a tensor-parallel worker's group from its settings (TCP between every rank and rank 0).</summary>
internal static class CollectiveGroups
{
    public static async Task<ICollectiveGroup> JoinAsync(TensorParallelSettings tp, string initAddress, string fingerprint, string layout, CancellationToken cancellationToken)
    {
        try
        {
            return await TcpCollectiveGroup.JoinAsync(new TcpCollectiveOptions
            {
                Rank = tp.Rank,
                Size = tp.Size,
                InitAddress = initAddress,
                Fingerprint = fingerprint,
                Layout = layout,
                Timeout = tp.Timeout,
                RankTimeout = tp.RankTimeout,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (CollectiveException e)
        {
            throw new CliUsageException(e.Message);
        }
    }
}

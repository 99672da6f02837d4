using System.Globalization;

namespace Dynamo.Cli.Components;

/// <summary>
/// Data parallelism (--dp-size, with --enable-dp-attention as SGLang spells it): <see cref="Size"/> engine replicas of
/// the whole model, each its own KV cache, batch and routing target (worker, dp_rank); one worker process per node
/// serves that node's share, <see cref="LocalSize"/> replicas from rank <see cref="FirstLocalRank"/>, and registers
/// once. SGLang's --tp 16 --dp-size 16 --enable-dp-attention (16 ranks in all, attention data-parallel) is 16 replicas
/// here, each with one tensor-parallel rank: our engine has no mixture-of-experts layers to keep tensor-parallel
/// across replicas, so a replica holds the whole dense model.
/// </summary>
internal sealed record DataParallelSettings
{
    public static DataParallelSettings None { get; } = new();

    /// <summary>Replicas in all (--dp-size).</summary>
    public int Size { get; init; } = 1;

    /// <summary>--enable-dp-attention: the --tp ranks are shared out among the replicas (tp / dp each) rather than each replica having --tp ranks.</summary>
    public bool Attention { get; init; }

    /// <summary>Nodes the replicas are spread over (--nnodes).</summary>
    public int Nodes { get; init; } = 1;

    /// <summary>This node (--node-rank).</summary>
    public int NodeRank { get; init; }

    public bool Enabled => Size > 1;

    /// <summary>Replicas this node serves.</summary>
    public int LocalSize => Size / Nodes;

    /// <summary>The rank of this node's first replica.</summary>
    public int FirstLocalRank => NodeRank * LocalSize;

    /// <summary>
    /// Splits the parallelism flags into what each replica runs (its tensor-parallel settings) and the data-parallel
    /// layout; throws <see cref="ArgumentException"/> naming the flag of a combination that cannot be served.
    /// </summary>
    public static (TensorParallelSettings PerReplica, DataParallelSettings Layout) Resolve(TensorParallelSettings tensor, int dpSize, bool attention)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (dpSize is < 1 or > 256)
        {
            throw new ArgumentException(Invariant($"--dp-size: {dpSize} is outside 1..256"));
        }

        if (dpSize == 1)
        {
            return (tensor, None with { Attention = attention });
        }

        if (tensor.Pipeline)
        {
            throw new ArgumentException(Invariant($"--dp-size: {dpSize} replicas with --pipeline-parallel-size {tensor.Size} is not supported yet; use one of them"));
        }

        if (attention && tensor.Size % dpSize != 0)
        {
            throw new ArgumentException(Invariant($"--dp-size: {dpSize} replicas cannot share --tensor-parallel-size {tensor.Size} ranks evenly (--enable-dp-attention gives each replica tp / dp ranks)"));
        }

        int perReplica = attention ? tensor.Size / dpSize : tensor.Size;
        if (perReplica != 1)
        {
            throw new ArgumentException(Invariant(
                $"--dp-size: {dpSize} replicas of {perReplica} tensor-parallel ranks each is not supported yet; use --tp {dpSize} --dp-size {dpSize} --enable-dp-attention, or --dp-size {dpSize} alone (each replica the whole model)"));
        }

        if (dpSize % tensor.Nodes != 0)
        {
            throw new ArgumentException(Invariant($"--nnodes: {tensor.Nodes} nodes cannot hold the same number of the {dpSize} data-parallel replicas"));
        }

        if (tensor.NodeRank < 0 || tensor.NodeRank >= tensor.Nodes)
        {
            throw new ArgumentException(Invariant($"--node-rank: {tensor.NodeRank} is outside 0..{tensor.Nodes - 1}"));
        }

        var layout = new DataParallelSettings { Size = dpSize, Attention = attention, Nodes = tensor.Nodes, NodeRank = tensor.NodeRank };
        return (TensorParallelSettings.None with { Transport = tensor.Transport, Timeout = tensor.Timeout, RankTimeout = tensor.RankTimeout, MicroBatches = tensor.MicroBatches }, layout);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

using System.Globalization;
using Dynamo.Components.Parallel;

namespace Dynamo.Cli.Components;

/// <summary>
/// How a worker's model is split over processes (--tensor-parallel-size or --pipeline-parallel-size, --nnodes,
/// --node-rank, --dist-init-addr, as SGLang spells them): <see cref="Size"/> ranks, tensor-parallel shards or, with
/// <see cref="Pipeline"/>, pipeline stages of consecutive layers; <see cref="Size"/> / <see cref="Nodes"/> on each node; node
/// <see cref="NodeRank"/> runs ranks <see cref="FirstLocalRank"/>.. as one process each (the command starts the others
/// of its node). Rank 0 (on node 0) runs the scheduler and alone registers the worker; the others follow its steps.
/// </summary>
internal sealed record TensorParallelSettings
{
    public static TensorParallelSettings None { get; } = new();

    /// <summary>Ranks in all (--tensor-parallel-size or --pipeline-parallel-size); 1: the whole model in this process.</summary>
    public int Size { get; init; } = 1;

    /// <summary>True: the ranks are pipeline stages, each with consecutive layers (--pipeline-parallel-size); false: tensor-parallel shards.</summary>
    public bool Pipeline { get; init; }

    /// <summary>Pipeline: the micro-batches rank 0 cuts a pass into (--pp-micro-batches); null: one per stage.</summary>
    public int? MicroBatches { get; init; }

    /// <summary>The flag that set <see cref="Size"/>, for messages.</summary>
    public string SizeFlag => Pipeline ? "--pipeline-parallel-size" : "--tensor-parallel-size";

    /// <summary>Nodes the ranks are spread over (--nnodes).</summary>
    public int Nodes { get; init; } = 1;

    /// <summary>This node (--node-rank), 0 .. <see cref="Nodes"/> - 1.</summary>
    public int NodeRank { get; init; }

    /// <summary>HOST:PORT where rank 0 meets the others (--dist-init-addr); on one node a free local port when not given.</summary>
    public string? InitAddress { get; init; }

    /// <summary>The rank of a process this command started for its node (the hidden --tp-rank); null in the one a user started.</summary>
    public int? SpawnedRank { get; init; }

    /// <summary>"auto" (shared memory among the ranks of a node, TCP between nodes), "tcp" or "shm" (--tp-transport).</summary>
    public string Transport { get; init; } = "auto";

    /// <summary>How long ranks wait for each other at start (--dist-timeout).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>How long a rank may stay silent while serving before it counts as lost (--rank-timeout).</summary>
    public TimeSpan RankTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public bool Enabled => Size > 1;

    /// <summary>
    /// The split that --tensor-parallel-size <paramref name="tensor"/> and --pipeline-parallel-size
    /// <paramref name="pipeline"/> ask for; both above 1 is refused in one line (not supported yet).
    /// </summary>
    public TensorParallelSettings WithSizes(int tensor, int pipeline)
    {
        if (tensor < 1 || pipeline < 1)
        {
            throw new ArgumentException(tensor < 1 ? Invariant($"--tensor-parallel-size: {tensor} must be at least 1") : Invariant($"--pipeline-parallel-size: {pipeline} must be at least 1"));
        }

        if (tensor > 1 && pipeline > 1)
        {
            throw new ArgumentException(Invariant($"--tensor-parallel-size {tensor} with --pipeline-parallel-size {pipeline}: combining tensor and pipeline parallelism is not supported yet; use one of them"));
        }

        return this with { Size = Math.Max(tensor, pipeline), Pipeline = pipeline > 1 };
    }

    public int RanksPerNode => Size / Nodes;

    public int FirstLocalRank => NodeRank * RanksPerNode;

    /// <summary>This process's rank.</summary>
    public int Rank => SpawnedRank ?? FirstLocalRank;

    /// <summary>The ranks of this node other than the first: the processes the command starts.</summary>
    public IEnumerable<int> OtherLocalRanks => SpawnedRank is null ? Enumerable.Range(FirstLocalRank + 1, RanksPerNode - 1) : [];

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting.</summary>
    public TensorParallelSettings Validate()
    {
        static void Check(bool ok, string message)
        {
            if (!ok)
            {
                throw new ArgumentException(message);
            }
        }

        Check(Size is >= 1 and <= 256, Invariant($"{SizeFlag}: {Size} is outside 1..256"));
        Check(Nodes is >= 1 && Nodes <= Size, Invariant($"--nnodes: {Nodes} must be at least 1 and at most {SizeFlag} ({Size})"));
        Check(MicroBatches is null or (>= 1 and <= 4096), Invariant($"--pp-micro-batches: {MicroBatches} is outside 1..4096"));
        Check(MicroBatches is null || Pipeline, "--pp-micro-batches: only a pipeline-parallel worker (--pipeline-parallel-size > 1) cuts its passes into micro-batches");
        Check(Size % Nodes == 0, Invariant($"--nnodes: {Nodes} nodes cannot hold the same number of the {Size} ranks"));
        Check(NodeRank >= 0 && NodeRank < Nodes, Invariant($"--node-rank: {NodeRank} is outside 0..{Nodes - 1}"));
        Check(Nodes == 1 || InitAddress is not null, Invariant($"--dist-init-addr: {Nodes} nodes need the HOST:PORT where rank 0 (on node 0) meets the others"));
        if (InitAddress is not null)
        {
            // The collectives' own check of HOST:PORT (one line naming --dist-init-addr).
            new CollectiveMember(Rank, Size, InitAddress, CollectiveAgreement.FromText("")) { NodeCount = Nodes, NodeRank = NodeRank }.Validate();
        }

        Check(SpawnedRank is null || (SpawnedRank >= FirstLocalRank && SpawnedRank < FirstLocalRank + RanksPerNode), Invariant($"--tp-rank: {SpawnedRank} is not a rank of node {NodeRank}"));
        Check(Transport is "auto" or "tcp" or "shm", $"--tp-transport: '{Transport}' is not auto, tcp or shm");
        Check(Timeout > TimeSpan.Zero && Timeout <= TimeSpan.FromHours(1), Invariant($"--dist-timeout: {Timeout.TotalSeconds} s is outside (0, 3600]"));
        Check(RankTimeout >= TimeSpan.FromSeconds(2) && RankTimeout <= TimeSpan.FromHours(1), Invariant($"--rank-timeout: {RankTimeout.TotalSeconds} s is outside [2, 3600] (rank 0 speaks every second)"));
        return this;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

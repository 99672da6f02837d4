namespace Dynamo.Components.Parallel;

/// <summary>
/// Who this process is in its tensor-parallel group, as the worker's flags say (<c>--tensor-parallel-size</c>,
/// <c>--nnodes</c>, <c>--node-rank</c>, <c>--dist-init-addr</c>): rank 0 listens on <see cref="InitAddress"/>, the others
/// connect to it.
/// </summary>
/// <param name="Rank">0 .. <paramref name="Size"/> - 1.</param>
/// <param name="Size">The tensor-parallel size N.</param>
/// <param name="InitAddress">HOST:PORT of rank 0's rendezvous (<c>[::1]:PORT</c> for an IPv6 address).</param>
/// <param name="Agreement">What every rank must share (compared by rank 0).</param>
public sealed record CollectiveMember(int Rank, int Size, string InitAddress, CollectiveAgreement Agreement)
{
    /// <summary>How many hosts the group spans (<c>--nnodes</c>); every rank must say the same.</summary>
    public int NodeCount { get; init; } = 1;

    /// <summary>This host's index among them (<c>--node-rank</c>), 0 .. <see cref="NodeCount"/> - 1.</summary>
    public int NodeRank { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad value as the flag that sets it.</summary>
    public CollectiveMember Validate()
    {
        if (Size < 1)
        {
            throw new ArgumentException($"--tensor-parallel-size: {Size} must be at least 1");
        }

        if (Rank < 0 || Rank >= Size)
        {
            throw new ArgumentException($"rank {Rank} is not a rank of a group of {Size} (0 .. {Size - 1})");
        }

        if (NodeCount < 1 || NodeRank < 0 || NodeRank >= NodeCount)
        {
            throw new ArgumentException($"--node-rank {NodeRank} must be from 0 to --nnodes {NodeCount} - 1");
        }

        _ = InitEndpoint.Parse(InitAddress);
        return this;
    }
}

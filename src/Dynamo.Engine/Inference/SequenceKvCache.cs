using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;

namespace Dynamo.Engine.Inference;

/// <summary>
/// The keys and values of one sequence of up to <see cref="Capacity"/> positions, contiguous: what the
/// <see cref="Generator"/> (single-request generation) and <c>bench forward</c> use, where the serving engine
/// uses a <see cref="PagedKvCache"/> shared by many sequences. It is a <see cref="PagedKvCache"/> of one block of
/// <see cref="Capacity"/> tokens, so each kv head's positions are contiguous per layer ([kvHead * capacity * headDim + position * headDim])
/// and the forward pass is the paged one with block table [0].
/// </summary>
public sealed class SequenceKvCache
{
    private static long _lastId;

    /// <summary>A cache of <paramref name="capacity"/> positions of <paramref name="config"/>'s shape; <paramref name="dtype"/>: the element type, F32 (exact) unless given (see <see cref="PagedKvCache"/>).</summary>
    public SequenceKvCache(ModelConfig config, int capacity, KvCacheDtype dtype = KvCacheDtype.F32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        Paged = new PagedKvCache(config, blockCount: 1, blockSize: capacity, dtype);
    }

    public int Capacity { get; }

    public KvCacheDtype Dtype => Paged.Dtype;

    public int KvDim => Paged.KvDim;

    internal PagedKvCache Paged { get; }

    /// <summary>Unique in this process, never 0: how tensor-parallel ranks name the leader's cache (their own holds their heads).</summary>
    internal long Id { get; } = Interlocked.Increment(ref _lastId);

    /// <summary>The one block, 0, holds every position.</summary>
    internal int[] BlockTable { get; } = [0];
}

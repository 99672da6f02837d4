namespace Dynamo.Llm.Routing;

/// <summary>
/// The result of <see cref="KvIndex.FindMatches(ReadOnlySpan{ulong}, OverlapScores)"/>: for each worker
/// holding at least the request's first block, how many leading blocks of the request it holds. Reusable:
/// each call overwrites it, so a caller that keeps one instance looks up without allocating.
/// </summary>
public sealed class OverlapScores
{
    private RoutingTarget[] _workers = new RoutingTarget[16];
    private int[] _blocks = new int[16];

    /// <summary>Workers with an overlap of at least one block.</summary>
    public int Count { get; private set; }

    /// <summary>The matched workers (each a worker and data-parallel rank) (parallel to <see cref="Blocks"/>), in no particular order.</summary>
    public ReadOnlySpan<RoutingTarget> WorkerIds => _workers.AsSpan(0, Count);

    /// <summary>Each matched worker's overlap, in leading blocks of the request.</summary>
    public ReadOnlySpan<int> Blocks => _blocks.AsSpan(0, Count);

    /// <summary>The overlap of <paramref name="workerId"/> in blocks; 0 when it holds not even the first block.</summary>
    public int Get(RoutingTarget workerId)
    {
        for (int i = 0; i < Count; i++)
        {
            if (_workers[i] == workerId)
            {
                return _blocks[i];
            }
        }

        return 0;
    }

    internal void Clear() => Count = 0;

    internal void Add(RoutingTarget workerId, int blocks)
    {
        if (Count == _workers.Length)
        {
            Array.Resize(ref _workers, Count * 2);
            Array.Resize(ref _blocks, Count * 2);
        }

        _workers[Count] = workerId;
        _blocks[Count] = blocks;
        Count++;
    }
}

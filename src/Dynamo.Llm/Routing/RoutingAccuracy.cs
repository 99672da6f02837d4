namespace Dynamo.Llm.Routing;

/// <summary>
/// How well a <see cref="KvRouter"/>'s view of one worker's cache matches what the worker's engine found, over its
/// last N completed requests (a ring). Per request, in blocks (each count capped at the blocks before the prompt's
/// last token, which an engine always computes): the index <em>over-claims</em> when it said the worker caches more
/// leading blocks than the engine found, and <em>under-claims</em> when the engine found more than the router
/// predicted with everything it counts (index, prefixes in flight, recent prefixes). Accuracy is one minus the
/// wrong blocks over the blocks at stake (the largest of claimed, predicted and found, per request). Over-claims
/// are judged against the index alone because a prefix in flight may legitimately not be cached yet when the
/// next request sharing it arrives. Not thread-safe: the router's gate guards it.
/// </summary>
internal sealed class RoutingAccuracy(int window)
{
    private readonly int[] _atStake = new int[window];
    private readonly int[] _wrong = new int[window];
    private int _next;

    /// <summary>Requests in the window (at most its size).</summary>
    public int Count { get; private set; }

    /// <summary>Blocks at stake over the window.</summary>
    public long AtStake { get; private set; }

    /// <summary>Wrong blocks (over- and under-claimed) over the window.</summary>
    public long Wrong { get; private set; }

    /// <summary>1 minus wrong over at-stake blocks; 1 when nothing was at stake.</summary>
    public double Value => AtStake == 0 ? 1 : 1 - ((double)Wrong / AtStake);

    /// <summary>Whether the window is full and holds at least one block at stake per request on average: enough to judge.</summary>
    public bool Judgeable => Count == _atStake.Length && AtStake >= Count;

    /// <summary>Counts one completed request: leading blocks the index claimed, the router predicted, and the engine found.</summary>
    public void Add(int indexedBlocks, int predictedBlocks, int foundBlocks)
    {
        int over = Math.Max(0, indexedBlocks - foundBlocks);
        int under = Math.Max(0, foundBlocks - predictedBlocks);
        int atStake = Math.Max(Math.Max(indexedBlocks, predictedBlocks), foundBlocks);
        if (Count == _atStake.Length)
        {
            AtStake -= _atStake[_next];
            Wrong -= _wrong[_next];
        }
        else
        {
            Count++;
        }

        _atStake[_next] = atStake;
        _wrong[_next] = Math.Min(over + under, atStake);
        AtStake += atStake;
        Wrong += _wrong[_next];
        _next = (_next + 1) % _atStake.Length;
    }

    /// <summary>Forgets the window (after a resync: the rebuilt index is judged afresh).</summary>
    public void Clear()
    {
        Array.Clear(_atStake);
        Array.Clear(_wrong);
        _next = 0;
        Count = 0;
        AtStake = 0;
        Wrong = 0;
    }
}

namespace Dynamo.Components.Processing;

/// <summary>
/// One choice's output token ids, in order, append-only: what a migrated attempt resumes from. The part an
/// <see cref="Append"/> returns never changes afterwards (growing copies into a new array and leaves the old one
/// as it was), so events carry their tokens as slices of it, without a copy per token, to whichever thread
/// reads them. One writer.
/// </summary>
/// <param name="capacity">Room reserved up front.</param>
internal sealed class TokenLog(int capacity = 0)
{
    private int[] _items = capacity > 0 ? new int[capacity] : [];
    private int _count;

    /// <summary>Token ids so far.</summary>
    public int Count => _count;

    /// <summary>Every token id so far.</summary>
    public ReadOnlyMemory<int> All => _items.AsMemory(0, _count);

    /// <summary>Appends <paramref name="ids"/>; returns them as they are kept here.</summary>
    public ReadOnlyMemory<int> Append(ReadOnlySpan<int> ids)
    {
        if (ids.IsEmpty)
        {
            return ReadOnlyMemory<int>.Empty;
        }

        if (_count + ids.Length > _items.Length)
        {
            var grown = new int[Math.Max(_count + ids.Length, Math.Max(16, _items.Length * 2))];
            _items.AsSpan(0, _count).CopyTo(grown);
            _items = grown;
        }

        ids.CopyTo(_items.AsSpan(_count));
        _count += ids.Length;
        return _items.AsMemory(_count - ids.Length, ids.Length);
    }
}

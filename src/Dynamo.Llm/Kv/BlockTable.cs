namespace Dynamo.Llm.Kv;

/// <summary>
/// The KV blocks of one sequence, in position order: position p lives in block <c>Ids[p / blockSize]</c>.
/// A growable array (no allocation once it has reached its size) whose <see cref="Ids"/> the engine passes
/// to the forward pass as it is; entries at and beyond <see cref="Count"/> are meaningless.
/// </summary>
public sealed class BlockTable
{
    private int[] _ids = new int[8];

    /// <summary>The block ids; only the first <see cref="Count"/> are valid.</summary>
    public int[] Ids => _ids;

    public int Count { get; private set; }

    public int this[int index] => (uint)index < (uint)Count ? _ids[index] : throw new ArgumentOutOfRangeException(nameof(index));

    public ReadOnlySpan<int> AsSpan() => _ids.AsSpan(0, Count);

    internal void Add(int blockId)
    {
        if (Count == _ids.Length)
        {
            Array.Resize(ref _ids, _ids.Length * 2);
        }

        _ids[Count++] = blockId;
    }

    internal void RemoveLast() => Count--;

    internal void Clear() => Count = 0;
}

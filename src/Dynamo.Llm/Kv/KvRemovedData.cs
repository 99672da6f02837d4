namespace Dynamo.Llm.Kv;

/// <summary>
/// Blocks no longer cached, by sequence hash. Equality compares the hashes element by element.
/// </summary>
/// <param name="BlockHashes">The removed blocks' sequence hashes; treated as immutable.</param>
public sealed record KvRemovedData(IReadOnlyList<ulong> BlockHashes) : KvEventData
{
    public bool Equals(KvRemovedData? other) => other is not null && BlockHashes.SequenceEqual(other.BlockHashes);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (ulong blockHash in BlockHashes)
        {
            hash.Add(blockHash);
        }

        return hash.ToHashCode();
    }
}

using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>
/// Blocks now cached, as one chain: the first block's parent is <paramref name="ParentHash"/> (null when
/// it is the first block of a sequence; in JSON <c>parent_hash</c> null or left out), each later block's parent is the block before it.
/// Equality compares the blocks element by element.
/// </summary>
/// <param name="ParentHash">The sequence hash of the first block's parent; null for a sequence's first block.</param>
/// <param name="Blocks">The stored blocks in sequence order; treated as immutable.</param>
public sealed record KvStoredData(ulong? ParentHash, IReadOnlyList<KvStoredBlock> Blocks) : KvEventData
{
    // For JSON: "parent_hash" may be left out (as the original system's serde reads it), meaning null.
    [JsonConstructor]
    internal KvStoredData(IReadOnlyList<KvStoredBlock> blocks, ulong? parentHash = null)
        : this(parentHash, blocks)
    {
    }

    public bool Equals(KvStoredData? other) =>
        other is not null && ParentHash == other.ParentHash && Blocks.SequenceEqual(other.Blocks);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(ParentHash);
        foreach (KvStoredBlock block in Blocks)
        {
            hash.Add(block);
        }

        return hash.ToHashCode();
    }
}

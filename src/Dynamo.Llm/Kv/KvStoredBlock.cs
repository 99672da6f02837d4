using System.Text.Json.Serialization;

namespace Dynamo.Llm.Kv;

/// <summary>One block of a <see cref="KvStoredData"/> event.</summary>
/// <param name="BlockHash">The block's sequence hash (its identity with its whole prefix; <see cref="BlockHasher.SequenceHash"/>).</param>
/// <param name="TokensHash">The block's local hash (its own tokens only; <see cref="BlockHasher.LocalHash"/>).</param>
// JsonRequired: the serializer builds a struct with its parameterless constructor, so without it a
// missing hash would silently read as 0.
public readonly record struct KvStoredBlock(
    [property: JsonRequired] ulong BlockHash,
    [property: JsonRequired] ulong TokensHash);

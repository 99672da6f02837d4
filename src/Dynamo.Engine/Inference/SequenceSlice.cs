using Dynamo.Engine.KvCache;

namespace Dynamo.Engine.Inference;

/// <summary>
/// One sequence's part of a batched <see cref="Transformer.Forward(ReadOnlySpan{int}, ReadOnlySpan{SequenceSlice}, PagedKvCache, Span{float})"/>:
/// the tokens <c>tokens[TokenStart .. TokenStart + TokenCount)</c> run at positions
/// <c>StartPos .. StartPos + TokenCount - 1</c> of the sequence whose KV blocks are <see cref="BlockTable"/>
/// (position p in block <c>BlockTable[p / blockSize]</c>; entries past the last position's block are not read).
/// With <see cref="WantLogits"/> the logits of the slice's last token are written, one row per such slice.
/// </summary>
public readonly record struct SequenceSlice(int TokenStart, int TokenCount, int StartPos, int[] BlockTable, bool WantLogits);

namespace Dynamo.Llm.Scheduling;

/// <summary>
/// Tokens <c>Sequence.Tokens[StartPos .. StartPos + TokenCount)</c> run in this step; when
/// <see cref="SamplesToken"/> the chunk reaches the end of the sequence and its last token's logits give
/// the next token.
/// </summary>
public readonly record struct ScheduledChunk(SequenceState Sequence, int StartPos, int TokenCount, bool SamplesToken);

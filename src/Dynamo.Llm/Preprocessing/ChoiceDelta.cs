using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Llm.Preprocessing;

/// <summary>What one worker response adds to a choice: text (never part of a stop string), log probabilities, and the finish reason at the end.</summary>
/// <param name="Text">New text (may be empty while a character or a possible stop string is held back).</param>
/// <param name="Logprobs">One entry per new token when log probabilities were asked for, else null.</param>
/// <param name="TextOffset">Length of the choice's text before <paramref name="Text"/> (completions' text_offset).</param>
/// <param name="FinishReason">"stop" or "length" on the last delta, else null.</param>
public readonly record struct ChoiceDelta(string Text, IReadOnlyList<ChatTokenLogprob>? Logprobs, int TextOffset, string? FinishReason);

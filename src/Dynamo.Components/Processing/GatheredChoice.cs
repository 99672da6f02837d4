using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Components.Processing;

/// <summary>One choice of a response that is not streamed, gathered from its events.</summary>
/// <param name="Text">The whole text.</param>
/// <param name="Logprobs">Every token's entry with the text offset of the delta it came in.</param>
/// <param name="FinishReason">The finish reason of the choice's last event.</param>
internal readonly record struct GatheredChoice(string Text, IReadOnlyList<(ChatTokenLogprob Entry, int TextOffset)> Logprobs, string? FinishReason);

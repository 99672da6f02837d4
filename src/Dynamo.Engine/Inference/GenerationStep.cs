using Dynamo.Llm.Engines;

namespace Dynamo.Engine.Inference;

/// <summary>One generated token; the last step of a sequence carries its <see cref="Finish"/> reason.</summary>
/// <param name="TokenId">The token, or -1 on a final step that produced none (cancellation, a full context).</param>
/// <param name="Text">The text this step completes (never a partial UTF-8 sequence, never part of a stop string).</param>
/// <param name="Logprob">The token's log-probability (0 unless requested).</param>
/// <param name="TopLogprobs">The most likely alternatives, when requested.</param>
/// <param name="Finish">Set on the last step only.</param>
public sealed record GenerationStep(int TokenId, string Text, float Logprob, IReadOnlyList<TokenLogprob>? TopLogprobs, FinishReason? Finish);

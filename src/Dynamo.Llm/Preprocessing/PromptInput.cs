namespace Dynamo.Llm.Preprocessing;

/// <summary>One tokenized prompt and the tokens it may generate (its choices share both).</summary>
/// <param name="TokenIds">The prompt's token ids (at least one).</param>
/// <param name="MaxTokens">max_tokens for this prompt (explicit, or the default clamped to the context).</param>
public sealed record PromptInput(IReadOnlyList<int> TokenIds, int MaxTokens);

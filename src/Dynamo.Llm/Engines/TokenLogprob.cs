namespace Dynamo.Llm.Engines;

/// <summary>A token and its log-probability under the model (before any sampling transformation).</summary>
public readonly record struct TokenLogprob(int TokenId, float Logprob);

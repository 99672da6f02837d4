namespace Dynamo.Llm.Engines;

/// <summary>A tokenized request to an engine.</summary>
/// <param name="Id">Unique among the engine's live requests; <see cref="IEngine.Cancel"/> names it.</param>
/// <param name="PromptTokens">At least one token.</param>
/// <param name="Sampling">How tokens are chosen and when generation stops (stop strings are applied by the caller, on text).</param>
public sealed record EngineRequest(string Id, IReadOnlyList<int> PromptTokens, SamplingParams Sampling);

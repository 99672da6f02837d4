namespace Dynamo.Engine.Inference;

/// <summary>Counts and times of one generation.</summary>
public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, TimeSpan Prefill, TimeSpan Decode)
{
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(Prefill.TotalSeconds, 1e-9);

    /// <summary>Tokens after the first (which prefill produces), per second of decode.</summary>
    public double DecodeTokensPerSecond => Math.Max(GeneratedTokens - 1, 0) / Math.Max(Decode.TotalSeconds, 1e-9);
}

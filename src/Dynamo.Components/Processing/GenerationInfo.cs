using Dynamo.Llm.Preprocessing;

namespace Dynamo.Components.Processing;

/// <summary>What the response writer needs to know of a preprocessed request before its first event.</summary>
/// <param name="ChoiceCount">Choices in the response (prompts x n).</param>
/// <param name="N">Samples per prompt (choices p*N .. p*N+N-1 share prompt p, whose cached tokens count once).</param>
/// <param name="PromptTokens">Prompt tokens over every prompt.</param>
/// <param name="Stream">Server-sent events.</param>
/// <param name="IncludeUsage">stream_options.include_usage.</param>
/// <param name="Logprobs">How log probabilities are returned.</param>
/// <param name="TopLogprobs">Alternatives per token asked for.</param>
internal sealed record GenerationInfo(int ChoiceCount, int N, int PromptTokens, bool Stream, bool IncludeUsage, LogprobsFormat Logprobs, int TopLogprobs)
{
    /// <summary>The info of <paramref name="request"/>.</summary>
    public static GenerationInfo Of(PreprocessedRequest request) => new(
        request.ChoiceCount, request.N, request.Prompts.Sum(p => p.TokenIds.Count), request.Stream, request.IncludeUsage, request.Logprobs, request.Sampling.TopLogprobs);
}

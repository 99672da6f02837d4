using Dynamo.Llm.Engines;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Llm.Preprocessing;

/// <summary>
/// A validated, tokenized OpenAI request: what the frontend sends to workers. Choice
/// <c>p * N + j</c> is the j-th sample of prompt p (OpenAI's numbering); each is its own generate request.
/// </summary>
public sealed record PreprocessedRequest
{
    /// <summary>The requested model name.</summary>
    public required string Model { get; init; }

    /// <summary>The request's extension settings (KV routing overrides), if any.</summary>
    public NvExt? NvExt { get; init; }

    /// <summary>The prompts (chat: exactly one).</summary>
    public required IReadOnlyList<PromptInput> Prompts { get; init; }

    /// <summary>Samples per prompt.</summary>
    public int N { get; init; } = 1;

    /// <summary>Sampling shared by every choice (MaxTokens and Seed are set per choice by <see cref="SamplingFor"/>).</summary>
    public required SamplingParams Sampling { get; init; }

    /// <summary>Server-sent events.</summary>
    public bool Stream { get; init; }

    /// <summary>stream_options.include_usage.</summary>
    public bool IncludeUsage { get; init; }

    /// <summary>How log probabilities are returned.</summary>
    public LogprobsFormat Logprobs { get; init; }

    /// <summary>Number of choices in the response.</summary>
    public int ChoiceCount => Prompts.Count * N;

    /// <summary>The prompt of choice <paramref name="choice"/>.</summary>
    public PromptInput PromptOf(int choice) => Prompts[choice / N];

    /// <summary>
    /// The sampling of choice <paramref name="choice"/>: its prompt's max_tokens, and with a seed, seed + j
    /// for the j-th sample so that n seeded samples differ yet are reproducible.
    /// </summary>
    public SamplingParams SamplingFor(int choice) => Sampling with
    {
        MaxTokens = PromptOf(choice).MaxTokens,
        Seed = Sampling.Seed is ulong seed ? unchecked(seed + (ulong)(choice % N)) : null,
    };
}

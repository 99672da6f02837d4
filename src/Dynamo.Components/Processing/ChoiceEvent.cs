using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Components.Processing;

/// <summary>
/// What a choice's worker stream produced, postprocessed: a delta with the tokens it took, or the error
/// that ended the choice. <paramref name="CompletionTokens"/> and <paramref name="CachedTokens"/> are the
/// choice's running totals (usage), so the last event of a choice carries them whole.
/// </summary>
/// <param name="Index">The choice.</param>
/// <param name="Delta">Text, log probabilities, finish reason.</param>
/// <param name="NewTokens">Tokens the worker produced for this event (for throughput and inter-token metrics).</param>
/// <param name="CompletionTokens">The choice's completion tokens so far (up to a stop string).</param>
/// <param name="CachedTokens">Prompt tokens the worker found in its prefix cache (known at the end).</param>
/// <param name="Error">The error that ended the choice, or null.</param>
internal readonly record struct ChoiceEvent(int Index, ChoiceDelta Delta, int NewTokens, int CompletionTokens, int CachedTokens, OpenAiException? Error)
{
    /// <summary>
    /// The worker's token ids of this event (<see cref="NewTokens"/> of them), which a frontend relaying a
    /// Processor component keeps to migrate the request if the processor fails: a slice of the choice's
    /// <see cref="TokenLog"/>, never copied per token. Empty where nobody keeps them.
    /// </summary>
    public ReadOnlyMemory<int> TokenIds { get; init; }

    /// <summary>An event that ends choice <paramref name="index"/> with <paramref name="error"/>.</summary>
    public static ChoiceEvent Failed(int index, OpenAiException error) => new(index, default, 0, 0, 0, error);
}

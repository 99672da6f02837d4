namespace Dynamo.Load.Workloads;

/// <summary>One request of a conversation: the new user message and its max_tokens.</summary>
internal sealed record LoadTurn(string User, int MaxTokens)
{
    /// <summary>When set, the turn is sent to /v1/completions with these token ids as the prompt (exact prompt lengths).</summary>
    public IReadOnlyList<int>? PromptTokenIds { get; init; }
}

namespace Dynamo.Load.Workloads;

/// <summary>
/// <c>multi-turn</c>: conversations of <see cref="TurnsPerConversation"/> turns (the last one shorter so
/// that the turns add up to num-prompts). The first user message has input-len random words, each later
/// one a quarter of that (at least one word); every turn's request carries the earlier turns and the
/// model's actual answers, so the context grows by the previous answer and the new message each turn.
/// One worker sends a conversation's turns one after the other.
/// </summary>
internal sealed class MultiTurnWorkload : IWorkload
{
    public const string WorkloadName = "multi-turn";

    /// <summary>Turns of every full conversation.</summary>
    public const int TurnsPerConversation = 4;

    public string Name => WorkloadName;

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        var random = new Random(options.Seed);
        int followUpWords = Math.Max(1, options.InputTokens / 4);
        var conversations = new List<LoadConversation>();
        for (int left = options.NumPrompts; left > 0; left -= TurnsPerConversation)
        {
            int turns = Math.Min(TurnsPerConversation, left);
            var list = new LoadTurn[turns];
            for (int t = 0; t < turns; t++)
            {
                list[t] = new LoadTurn(SyntheticText.Words(random, t == 0 ? options.InputTokens : followUpWords), options.OutputTokens);
            }

            conversations.Add(new LoadConversation(null, list));
        }

        return conversations;
    }
}

namespace Dynamo.Cli.Load;

/// <summary>
/// <c>shared-prefix</c>: <see cref="Groups"/> groups (fewer if there are fewer requests), each with its
/// own system prompt of 80% of input-len random words; request i belongs to group i mod groups and adds
/// a user message of its own random words (the remaining 20%, at least one word).
/// </summary>
internal sealed class SharedPrefixWorkload : IWorkload
{
    public const string WorkloadName = "shared-prefix";

    /// <summary>Number of distinct prefixes.</summary>
    public const int Groups = 8;

    /// <summary>Share of input-len that is the group's prefix.</summary>
    public const double PrefixFraction = 0.8;

    public string Name => WorkloadName;

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        var random = new Random(options.Seed);
        int groups = Math.Min(Groups, options.NumPrompts);
        int prefixWords = Math.Max(1, (int)Math.Round(options.InputTokens * PrefixFraction));
        int suffixWords = Math.Max(1, options.InputTokens - prefixWords);
        string[] prefixes = [.. Enumerable.Range(0, groups).Select(_ => SyntheticText.Words(random, prefixWords))];
        var conversations = new LoadConversation[options.NumPrompts];
        for (int i = 0; i < conversations.Length; i++)
        {
            conversations[i] = new LoadConversation(prefixes[i % groups], [new LoadTurn(SyntheticText.Words(random, suffixWords), options.OutputTokens)]);
        }

        return conversations;
    }
}

namespace Dynamo.Load.Workloads;

/// <summary><c>random</c>: every request is one user message of input-len random words, no shared prefix.</summary>
internal sealed class RandomWorkload : IWorkload
{
    public const string WorkloadName = "random";

    public string Name => WorkloadName;

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        var random = new Random(options.Seed);
        var conversations = new LoadConversation[options.NumPrompts];
        for (int i = 0; i < conversations.Length; i++)
        {
            conversations[i] = new LoadConversation(null, [new LoadTurn(SyntheticText.Words(random, options.InputTokens), options.OutputTokens)]);
        }

        return conversations;
    }
}

namespace Dynamo.Load.Workloads;

/// <summary>
/// Prompts of exactly --input-len random token ids (ids 100..999, present in every vocabulary this
/// project serves), sent to /v1/completions: the load of ../shared/anchors.md's llama-server figures
/// (prompts of 200 tokens, 128 output tokens), whatever the tokenizer.
/// </summary>
internal sealed class RandomTokensWorkload : IWorkload
{
    public const string WorkloadName = "random-tokens";

    public string Name => WorkloadName;

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        var random = new Random(options.Seed);
        var conversations = new LoadConversation[options.NumPrompts];
        for (int i = 0; i < conversations.Length; i++)
        {
            int[] ids = [.. Enumerable.Range(0, options.InputTokens).Select(_ => random.Next(100, 1000))];
            conversations[i] = new LoadConversation(null, [new LoadTurn("", options.OutputTokens) { PromptTokenIds = ids }]);
        }

        return conversations;
    }
}

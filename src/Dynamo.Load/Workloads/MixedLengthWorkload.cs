namespace Dynamo.Load.Workloads;

/// <summary>
/// Prompts of random token ids of two lengths, sent to /v1/completions as <see cref="RandomTokensWorkload"/>'s:
/// round(<see cref="LongFraction"/> x --num-prompts) prompts of <see cref="LongTokens"/> tokens, the others of
/// <see cref="ShortTokens"/>, in a seeded random order; each prompt's ids are its own (no shared prefix), drawn
/// from 100..999 or, in a smaller vocabulary, from its upper three quarters. The workload of
/// <c>bench disagg</c>: long prompts are the ones worth prefilling on another worker.
/// </summary>
internal sealed class MixedLengthWorkload(int longTokens, int shortTokens, double longFraction, int vocabSize) : IWorkload
{
    public const string WorkloadName = "mixed-length";

    public string Name => WorkloadName;

    public int LongTokens { get; } = longTokens;

    public int ShortTokens { get; } = shortTokens;

    public double LongFraction { get; } = longFraction;

    /// <summary>Token ids are below this.</summary>
    public int VocabSize { get; } = vocabSize;

    /// <summary>How many of <paramref name="requests"/> prompts are long.</summary>
    public int LongCount(int requests) => (int)Math.Round(LongFraction * requests, MidpointRounding.AwayFromZero);

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        var random = new Random(options.Seed);
        int n = options.NumPrompts;
        bool[] isLong = [.. Enumerable.Range(0, n).Select(i => i < LongCount(n))];
        random.Shuffle(isLong);
        int high = Math.Min(1000, VocabSize), low = Math.Min(100, VocabSize / 4);
        var conversations = new LoadConversation[n];
        for (int i = 0; i < n; i++)
        {
            int[] ids = [.. Enumerable.Range(0, isLong[i] ? LongTokens : ShortTokens).Select(_ => random.Next(low, high))];
            conversations[i] = new LoadConversation(null, [new LoadTurn("", options.OutputTokens) { PromptTokenIds = ids }]);
        }

        return conversations;
    }
}

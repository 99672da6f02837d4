namespace Dynamo.Load.Workloads;

/// <summary>
/// <c>shared-prefix</c>: --prefix-groups groups (fewer if there are fewer requests), each with its own
/// system prompt of 80% of input-len random words; each request draws its group at random (seeded):
/// group k (from 1) with weight 1 / k^s, s = --prefix-zipf (0: uniform), every group at least once; it adds a user message of its own random words (the remaining
/// 20%, at least one word). Random order keeps round-robin from lining groups up with workers.
/// </summary>
internal sealed class SharedPrefixWorkload : IWorkload
{
    public const string WorkloadName = "shared-prefix";

    /// <summary>Default number of distinct prefixes (--prefix-groups).</summary>
    public const int DefaultGroups = 32;

    /// <summary>Share of input-len that is the group's prefix.</summary>
    public const double PrefixFraction = 0.8;

    public string Name => WorkloadName;

    public IReadOnlyList<LoadConversation> Build(LoadOptions options)
    {
        var random = new Random(options.Seed);
        int groups = Math.Min(options.PrefixGroups, options.NumPrompts);
        int prefixWords = Math.Max(1, (int)Math.Round(options.InputTokens * PrefixFraction));
        int suffixWords = Math.Max(1, options.InputTokens - prefixWords);
        string[] prefixes = [.. Enumerable.Range(0, groups).Select(_ => SyntheticText.Words(random, prefixWords))];
        double[] cumulative = new double[groups];
        double total = 0;
        for (int k = 0; k < groups; k++)
        {
            total += 1 / Math.Pow(k + 1, options.PrefixZipf);
            cumulative[k] = total;
        }

        var conversations = new LoadConversation[options.NumPrompts];
        for (int i = 0; i < conversations.Length; i++)
        {
            int group = i < groups ? i : Pick(cumulative, random.NextDouble() * total);
            conversations[i] = new LoadConversation(prefixes[group], [new LoadTurn(SyntheticText.Words(random, suffixWords), options.OutputTokens)]);
        }

        // Shuffle so that the first-use requests are not all at the start.
        random.Shuffle(conversations);
        return conversations;
    }

    private static int Pick(double[] cumulative, double x)
    {
        int i = Array.BinarySearch(cumulative, x);
        return Math.Min(i < 0 ? ~i : i, cumulative.Length - 1);
    }
}

using Dynamo.Load;
using Dynamo.Load.Workloads;

namespace Dynamo.Tests.Load.Workloads;

public sealed class MixedLengthWorkloadTests
{
    [Fact]
    public void Build_ExactShareOfLongPromptsInASeededOrder_EachPromptItsOwnIds()
    {
        var workload = new MixedLengthWorkload(longTokens: 300, shortTokens: 20, longFraction: 0.25, vocabSize: 32000);
        LoadOptions options = LoadOptions.Default with { NumPrompts = 40, OutputLen = 7 };

        IReadOnlyList<LoadConversation> a = workload.Build(options);
        IReadOnlyList<LoadConversation> b = workload.Build(options);
        IReadOnlyList<LoadConversation> c = workload.Build(options with { Seed = 9 });

        int[] lengths = [.. a.Select(conv => Assert.Single(conv.Turns).PromptTokenIds!.Count)];
        Assert.Equal(10, lengths.Count(n => n == 300));
        Assert.Equal(30, lengths.Count(n => n == 20));
        Assert.All(a, conv => Assert.Equal(7, conv.Turns[0].MaxTokens));
        Assert.All(a, conv => Assert.All(conv.Turns[0].PromptTokenIds!, id => Assert.InRange(id, 100, 999)));
        Assert.Equal(a.Select(x => string.Join(',', x.Turns[0].PromptTokenIds!)), b.Select(x => string.Join(',', x.Turns[0].PromptTokenIds!)));
        Assert.NotEqual(lengths, c.Select(conv => conv.Turns[0].PromptTokenIds!.Count));
        Assert.Equal(40, a.Select(x => string.Join(',', x.Turns[0].PromptTokenIds!.Take(8))).Distinct().Count());
    }

    [Theory]
    [InlineData(0.0, 0)]
    [InlineData(1.0, 6)]
    [InlineData(0.5, 3)]
    [InlineData(0.25, 2)]
    public void LongCount_RoundsTheShare(double fraction, int expected)
    {
        Assert.Equal(expected, new MixedLengthWorkload(10, 5, fraction, 32000).LongCount(6));
    }

    [Fact]
    public void Build_SmallVocabulary_IdsStayInside()
    {
        IReadOnlyList<LoadConversation> a = new MixedLengthWorkload(50, 10, 0.5, vocabSize: 512).Build(LoadOptions.Default with { NumPrompts = 8 });

        Assert.All(a, conv => Assert.All(conv.Turns[0].PromptTokenIds!, id => Assert.InRange(id, 100, 511)));
    }
}

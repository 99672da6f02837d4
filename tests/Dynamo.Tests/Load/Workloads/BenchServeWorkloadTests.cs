using Dynamo.Load;
using Dynamo.Load.Client;
using Dynamo.Load.Workloads;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Load.Workloads;

public class BenchServeWorkloadTests
{
    private static int Words(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;

    [Fact]
    public void Random_NumPromptsSingleTurnsOfInputLenWords_SameForTheSameSeed()
    {
        LoadOptions options = LoadOptions.Default with { NumPrompts = 5, InputLen = 40, OutputLen = 9 };

        IReadOnlyList<LoadConversation> a = new RandomWorkload().Build(options);
        IReadOnlyList<LoadConversation> b = new RandomWorkload().Build(options);
        IReadOnlyList<LoadConversation> c = new RandomWorkload().Build(options with { Seed = 7 });

        Assert.Equal(5, a.Count);
        Assert.All(a, conv => Assert.Null(conv.System));
        Assert.All(a, conv => Assert.Equal(40, Words(Assert.Single(conv.Turns).User)));
        Assert.All(a, conv => Assert.Equal(9, conv.Turns[0].MaxTokens));
        Assert.Equal(a.Select(x => x.Turns[0].User), b.Select(x => x.Turns[0].User));
        Assert.NotEqual(a[0].Turns[0].User, c[0].Turns[0].User);
        Assert.Equal(5, a.Select(x => x.Turns[0].User).Distinct().Count());
    }

    [Fact]
    public void RandomTokens_ExactTokenPromptsSentAsCompletions()
    {
        LoadOptions options = LoadOptions.Default with { NumPrompts = 3, InputLen = 200, OutputLen = 128 };
        IReadOnlyList<LoadConversation> a = WorkloadParser.Parse("random-tokens").Build(options);
        Assert.Equal(3, a.Count);
        Assert.All(a, conv => Assert.Equal(200, Assert.Single(conv.Turns).PromptTokenIds!.Count));
        Assert.All(a, conv => Assert.All(conv.Turns[0].PromptTokenIds!, id => Assert.InRange(id, 100, 999)));
        Assert.Equal(128, a[0].Turns[0].MaxTokens);
        using var doc = System.Text.Json.JsonDocument.Parse(ChatStreamClient.TokensRequestBody("m", [5, 6], 3));
        Assert.Equal([5, 6], doc.RootElement.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()));
        Assert.True(doc.RootElement.GetProperty("stream").GetBoolean());
    }

    [Fact]
    public void Random_NoLengths_UsesTheDefaults()
    {
        LoadConversation only = Assert.Single(new RandomWorkload().Build(LoadOptions.Default with { NumPrompts = 1 }));

        Assert.Equal(LoadOptions.DefaultInputLen, Words(only.Turns[0].User));
        Assert.Equal(LoadOptions.DefaultOutputLen, only.Turns[0].MaxTokens);
    }

    [Fact]
    public void SharedPrefix_GroupsOfEightyPercentPrefix_EveryGroupUsedInRandomOrder()
    {
        LoadOptions options = LoadOptions.Default with { NumPrompts = 200, InputLen = 100, PrefixGroups = 8 };

        IReadOnlyList<LoadConversation> all = new SharedPrefixWorkload().Build(options);

        Assert.Equal(200, all.Count);
        Assert.Equal(8, all.Select(c => c.System).Distinct().Count());
        Assert.All(all, c => Assert.Equal(80, Words(c.System!)));
        Assert.All(all, c => Assert.Equal(20, Words(c.Turns[0].User)));
        Assert.Equal(200, all.Select(c => c.Turns[0].User).Distinct().Count());

        // Not request i -> group i mod groups (which lines groups up with round-robin workers).
        Assert.Contains(Enumerable.Range(8, 192), i => all[i].System != all[i % 8].System);
        Assert.Equal(all.Select(c => c.System), new SharedPrefixWorkload().Build(options).Select(c => c.System));
    }

    [Fact]
    public void SharedPrefix_Zipf_FirstGroupsMostPopular()
    {
        LoadOptions options = LoadOptions.Default with { NumPrompts = 4000, InputLen = 10, PrefixGroups = 16, PrefixZipf = 1 };

        int[] counts = [.. new SharedPrefixWorkload().Build(options).GroupBy(c => c.System).Select(g => g.Count()).OrderDescending()];

        Assert.Equal(16, counts.Length);
        double harmonic = Enumerable.Range(1, 16).Sum(k => 1.0 / k);
        Assert.InRange(counts[0] / 4000.0, (1 / harmonic) - 0.04, (1 / harmonic) + 0.04);
        Assert.InRange(counts[^1] / 4000.0, 0.005, (1 / (16 * harmonic)) + 0.02);
    }

    [Fact]
    public void PoissonArrivals_Rate_MeanGapIsOneOverRateAndOrderKept()
    {
        LoadOptions options = LoadOptions.Default with { NumPrompts = 2000, InputLen = 1 };

        IReadOnlyList<LoadConversation> all = new PoissonArrivals(new RandomWorkload(), 50).Build(options);

        Assert.Equal(TimeSpan.Zero, all[0].Arrival);
        Assert.True(all.Zip(all.Skip(1)).All(p => p.First.Arrival <= p.Second.Arrival));
        Assert.InRange(all[^1].Arrival.TotalSeconds / (all.Count - 1), 1 / 50.0 * 0.9, 1 / 50.0 * 1.1);
        Assert.Equal(new RandomWorkload().Build(options).Select(c => c.Turns[0].User), all.Select(c => c.Turns[0].User));
    }

    [Fact]
    public void SharedPrefix_FewerPromptsThanGroups_OneGroupEach()
    {
        IReadOnlyList<LoadConversation> all = new SharedPrefixWorkload().Build(LoadOptions.Default with { NumPrompts = 3, InputLen = 1 });

        Assert.Equal(3, all.Select(c => c.System).Distinct().Count());
        Assert.All(all, c => Assert.Equal(1, Words(c.Turns[0].User)));
    }

    [Fact]
    public void MultiTurn_ConversationsOfFourTurnsAddingUpToNumPrompts()
    {
        IReadOnlyList<LoadConversation> all = new MultiTurnWorkload().Build(LoadOptions.Default with { NumPrompts = 10, InputLen = 40, OutputLen = 3 });

        Assert.Equal([4, 4, 2], all.Select(c => c.Turns.Count));
        Assert.All(all, c => Assert.Equal(40, Words(c.Turns[0].User)));
        Assert.All(all.SelectMany(c => c.Turns.Skip(1)), t => Assert.Equal(10, Words(t.User)));
        Assert.All(all.SelectMany(c => c.Turns), t => Assert.Equal(3, t.MaxTokens));
    }

    [Fact]
    public void TraceRead_MooncakeLines_ParsesTheFieldsUpToTheLimit()
    {
        const string text = """
            {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2]}

            {"timestamp": 27.5, "input_length": 100, "output_length": 3, "hash_ids": [0, 9]}
            {"timestamp": 30, "input_length": 1, "output_length": 1, "hash_ids": []}
            """;

        List<TraceRecord> records = TraceWorkload.Read(new StringReader(text), 2);

        Assert.Equal(2, records.Count);
        Assert.Equal((0L, 6758, 500), (records[0].TimestampMs, records[0].InputLength, records[0].OutputLength));
        Assert.Equal([0L, 1, 2], records[0].HashIds);
        Assert.Equal(27, records[1].TimestampMs);
        Assert.Equal([0L, 9], records[1].HashIds);
    }

    [Fact]
    public void TraceRead_BadLine_ErrorNamesTheLine()
    {
        var e = Assert.Throws<InvalidDataException>(() => TraceWorkload.Read(new StringReader("{\"input_length\": 1, \"output_length\": 1}\n{\"timestamp\": 1}\n"), 10, "t.jsonl"));

        Assert.StartsWith("t.jsonl line 2:", e.Message);
    }

    [Fact]
    public void TracePrompts_SharedLeadingHashIds_GiveIdenticalTextPrefixes()
    {
        LoadOptions options = LoadOptions.Default with { TraceBlockTokens = 16 };
        TraceRecord[] records =
        [
            new(0, 512 * 3, 10, [0, 1, 2]),
            new(0, 512 * 3, 10, [0, 1, 5]),
            new(0, 512 * 2, 10, [7, 1]),
        ];

        LoadConversation[] c = TraceWorkload.ToConversations(records, options);
        string[][] words = [.. c.Select(x => x.Turns[0].User.Split(' '))];

        Assert.Equal([48, 48, 32], words.Select(w => w.Length));
        Assert.Equal(words[0].Take(32), words[1].Take(32));
        Assert.NotEqual(words[0].Skip(32), words[1].Skip(32));
        Assert.NotEqual(words[0].Take(16), words[2].Take(16));
        Assert.Equal(words[0].Skip(16).Take(16), words[2].Skip(16).Take(16));
        Assert.Equal(c[0].Turns[0].User, TraceWorkload.ToConversations(records, options)[0].Turns[0].User);
    }

    [Fact]
    public void TracePrompts_LengthsScaleByBlockTokensThenTheCapsApply()
    {
        TraceRecord[] records = [new(0, 1000, 600, [0, 1]), new(0, 100, 5, [0])];

        LoadConversation[] scaled = TraceWorkload.ToConversations(records, LoadOptions.Default with { TraceBlockTokens = 32 });
        LoadConversation[] capped = TraceWorkload.ToConversations(records, LoadOptions.Default with { TraceBlockTokens = 32, InputLen = 20, OutputLen = 10 });
        LoadConversation[] full = TraceWorkload.ToConversations(records, LoadOptions.Default);

        Assert.Equal([63, 7], scaled.Select(c => Words(c.Turns[0].User)));
        Assert.Equal([38, 1], scaled.Select(c => c.Turns[0].MaxTokens));
        Assert.Equal([20, 7], capped.Select(c => Words(c.Turns[0].User)));
        Assert.Equal([10, 1], capped.Select(c => c.Turns[0].MaxTokens));
        Assert.Equal([1000, 100], full.Select(c => Words(c.Turns[0].User)));
        Assert.Equal([600, 5], full.Select(c => c.Turns[0].MaxTokens));
        Assert.StartsWith(capped[0].Turns[0].User, scaled[0].Turns[0].User);
    }

    [Fact]
    public void TraceArrivals_RelativeToTheFirstAndDividedByTheScale_InArrivalOrder()
    {
        TraceRecord[] records = [new(5000, 1, 1, [0]), new(9000, 1, 1, [1]), new(7000, 1, 1, [2])];

        LoadConversation[] c = TraceWorkload.ToConversations(records, LoadOptions.Default with { TraceScale = 4 });

        Assert.Equal([TimeSpan.Zero, TimeSpan.FromMilliseconds(500), TimeSpan.FromMilliseconds(1000)], c.Select(x => x.Arrival));
    }

    [SharedFact]
    public void TraceBuild_SharedConversationTrace_FirstLinesShareTheirLeadingBlock()
    {
        var workload = new TraceWorkload(SharedData.Path("workloads", "mooncake_conversation_trace.jsonl"));

        IReadOnlyList<LoadConversation> c = workload.Build(LoadOptions.Default with { NumPrompts = 4, TraceBlockTokens = 16, InputLen = 64, OutputLen = 8 });

        Assert.Equal(4, c.Count);
        Assert.All(c, x => Assert.Equal(64, Words(x.Turns[0].User)));
        string firstBlock = string.Join(' ', c[0].Turns[0].User.Split(' ').Take(16));
        Assert.All(c, x => Assert.StartsWith(firstBlock + " ", x.Turns[0].User));
        Assert.NotEqual(c[0].Turns[0].User, c[1].Turns[0].User);
    }

    [Theory]
    [InlineData("random", typeof(RandomWorkload))]
    [InlineData("shared-prefix", typeof(SharedPrefixWorkload))]
    [InlineData("multi-turn", typeof(MultiTurnWorkload))]
    [InlineData("trace:/x/y.jsonl", typeof(TraceWorkload))]
    public void Parse_KnownNames_TheirWorkload(string name, Type type)
    {
        IWorkload w = WorkloadParser.Parse(name);

        Assert.IsType(type, w);
        Assert.Equal(name, w.Name);
    }

    [Theory]
    [InlineData("trace:")]
    [InlineData("sharegpt")]
    public void Parse_Unknown_UsageErrorListingTheNames(string name)
    {
        var e = Assert.Throws<ArgumentException>(() => WorkloadParser.Parse(name));

        Assert.Contains("random, random-tokens, shared-prefix, multi-turn, trace:FILE or trace-tokens:FILE", e.Message);
    }
}

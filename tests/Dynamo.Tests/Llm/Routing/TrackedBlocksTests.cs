using Dynamo.Llm.Routing;

namespace Dynamo.Tests.Llm.Routing;

public sealed class TrackedBlocksTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(100)]
    [InlineData(256)]
    [InlineData(1024)]
    [InlineData(1025)]
    [InlineData(6000)]
    public void Select_EveryBlockToSixtyFourThenSparser_LastAlwaysWeightsSumToTheBlocks(int blocks)
    {
        ulong[] hashes = [.. Enumerable.Range(0, blocks).Select(i => (ulong)i * 31)];
        int count = TrackedBlocks.Count(blocks);
        var tracked = new ulong[count];
        var positions = new int[count];

        Assert.Equal(count, TrackedBlocks.Select(hashes, tracked, positions));

        Assert.Equal(Enumerable.Range(0, Math.Min(blocks, 64)), positions.Take(64));
        Assert.Equal(blocks - 1, positions[^1]);
        Assert.All(Enumerable.Range(0, count), k => Assert.Equal(hashes[positions[k]], tracked[k]));
        Assert.All(Enumerable.Range(1, count - 1), k =>
        {
            int gap = positions[k] - positions[k - 1];
            Assert.Equal(gap, TrackedBlocks.Weight(positions[k]));
            Assert.InRange(gap, 1, positions[k] < 256 ? 4 : positions[k] < 1024 ? 16 : 64);
        });
        Assert.Equal(blocks, positions.Sum(TrackedBlocks.Weight));
    }

    [Fact]
    public void Count_LongPrompts_AFewHundredEntries()
    {
        Assert.Equal(64 + 48 + 48, TrackedBlocks.Count(1024));
        Assert.Equal(160 + 77 + 1, TrackedBlocks.Count(6000));
    }
}

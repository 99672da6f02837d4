using Dynamo.Llm.Routing;

namespace Dynamo.Tests.Llm.Routing;

public sealed class PrefixTableTests
{
    private static int BruteForce(Dictionary<(ulong, int), int> counts, int slot, ReadOnlySpan<ulong> hashes)
    {
        int n = 0;
        while (n < hashes.Length && counts.GetValueOrDefault((hashes[n], slot)) > 0)
        {
            n++;
        }

        return n;
    }

    // Multiset use (the router's in-flight table), slots beyond 64 included, keys colliding in their home
    // buckets (small consecutive values) so that deletion shifts probe runs: counts, membership, distinct
    // count and matches equal a plain dictionary of counts after every step.
    [Theory]
    [InlineData(8, 1)]
    [InlineData(150, 2)]
    public void IncrementDecrement_RandomSteps_EqualReferenceCounts(int slots, int seed)
    {
        var random = new Random(seed);
        var table = new PrefixTable();
        var counts = new Dictionary<(ulong, int), int>();
        ulong[] keys = [.. Enumerable.Range(0, 300).Select(i => i < 150 ? (ulong)i : (ulong)random.NextInt64())];
        for (int step = 0; step < 20_000; step++)
        {
            ulong hash = keys[random.Next(keys.Length)];
            int slot = random.Next(slots);
            int had = counts.GetValueOrDefault((hash, slot));
            if (random.Next(2) == 0)
            {
                Assert.Equal(had == 0, table.Increment(hash, slot));
                counts[(hash, slot)] = had + 1;
            }
            else if (had > 0)
            {
                Assert.Equal(had == 1, table.Decrement(hash, slot));
                counts[(hash, slot)] = had - 1;
            }
            else
            {
                Assert.False(table.Decrement(hash, slot));
            }

            Assert.Equal(counts.GetValueOrDefault((hash, slot)) > 0, table.Contains(hash, slot));
            if (step % 500 == 0)
            {
                Assert.Equal(counts.Where(c => c.Value > 0).Select(c => c.Key.Item1).Distinct().Count(), table.Count);
                ulong[] query = [.. Enumerable.Range(0, 6).Select(_ => keys[random.Next(20)])];
                table.Match(query);
                var matched = new HashSet<int>(table.MatchedSlots.ToArray());
                for (int s = 0; s < slots; s++)
                {
                    int expected = BruteForce(counts, s, query);
                    Assert.Equal(expected > 0, matched.Contains(s));
                    if (expected > 0)
                    {
                        Assert.Equal(expected, table.DepthOf(s));
                    }
                }
            }
        }
    }

    [Fact]
    public void RemoveSlot_ManyEntries_RemovesOnlyThatSlotAndKeepsLookupsWorking()
    {
        var table = new PrefixTable();
        for (ulong h = 0; h < 5000; h++)
        {
            table.Add(h, (int)(h % 3));
            table.Add(h, 70);
        }

        Assert.Equal(5000, table.RemoveSlot(70));
        Assert.Equal(1667, table.RemoveSlot(0));
        Assert.Equal(3333, table.Count);
        for (ulong h = 0; h < 5000; h++)
        {
            Assert.False(table.Contains(h, 70));
            Assert.Equal(h % 3 != 0, table.Contains(h, (int)(h % 3)));
        }
    }
}

using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Tests.Components.Parallel;

public class NetworkCollectivesTests
{
    private static readonly int[] s_lengths = [0, 1, 7, 768, 100_000];

    private static readonly CollectiveGroupOptions s_tinyPieces = CollectiveGroupOptions.Default with { PieceBytes = 4096, SmallMessageBytes = 1024 };

    [Theory]
    [InlineData(2, "tcp", false)]
    [InlineData(3, "tcp", false)]
    [InlineData(4, "tcp", false)]
    [InlineData(2, "shm", false)]
    [InlineData(3, "shm", false)]
    [InlineData(4, "shm", false)]
    [InlineData(4, "hybrid", false)]
    [InlineData(3, "hybrid", false)]
    [InlineData(3, "tcp", true)]
    [InlineData(3, "shm", true)]
    [InlineData(4, "hybrid", true)]
    public async Task AllReduceSum_EveryLength_IsTheRankOrderSumBitwiseOnEveryRank(int size, string transport, bool tinyPieces)
    {
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport, tinyPieces ? s_tinyPieces : null);
        try
        {
            var results = new float[size][][];
            await CollectiveRanks.RunAsync(groups, g =>
            {
                results[g.Rank] = new float[s_lengths.Length][];
                for (int k = 0; k < s_lengths.Length; k++)
                {
                    float[] values = CollectiveRanks.Values(g.Rank, s_lengths[k]);
                    g.AllReduceSum(values);
                    results[g.Rank][k] = values;
                }
            });

            for (int k = 0; k < s_lengths.Length; k++)
            {
                int[] expected = CollectiveRanks.Bits(CollectiveRanks.RankOrderSum(size, s_lengths[k]));
                for (int r = 0; r < size; r++)
                {
                    Assert.True(expected.SequenceEqual(CollectiveRanks.Bits(results[r][k])), $"rank {r}, length {s_lengths[k]}: not the rank-order sum");
                }
            }
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Fact]
    public async Task AllReduceSum_SameInputs_MatchesTheInProcessTwinBitwise()
    {
        const int size = 3, length = 5000;
        ICollectiveGroup[] network = await CollectiveRanks.JoinAsync(size, "tcp");
        ICollectiveGroup[] twin = InProcessCollectives.Create(size, CollectiveRanks.HangLimit);
        try
        {
            var fromNetwork = new float[size][];
            var fromTwin = new float[size][];
            await CollectiveRanks.RunAsync(network, g => g.AllReduceSum(fromNetwork[g.Rank] = CollectiveRanks.Values(g.Rank, length)));
            await CollectiveRanks.RunAsync(twin, g => g.AllReduceSum(fromTwin[g.Rank] = CollectiveRanks.Values(g.Rank, length)));
            for (int r = 0; r < size; r++)
            {
                Assert.Equal(CollectiveRanks.Bits(fromTwin[r]), CollectiveRanks.Bits(fromNetwork[r]));
            }
        }
        finally
        {
            CollectiveRanks.DisposeAll(network);
            CollectiveRanks.DisposeAll(twin);
        }
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    [InlineData("hybrid")]
    public async Task Gather_EveryRoot_ConcatenatesInRankOrderOnTheRoot(string transport)
    {
        const int size = 3;
        int[] lengths = [0, 5, 300_000];
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport);
        try
        {
            var gathered = new List<(int Root, int Length, float[] Values)>();
            await CollectiveRanks.RunAsync(groups, g =>
            {
                foreach (int length in lengths)
                {
                    for (int root = 0; root < size; root++)
                    {
                        float[] into = g.Rank == root ? new float[length * size] : [];
                        g.Gather(CollectiveRanks.Values(g.Rank, length), into, root);
                        if (g.Rank == root)
                        {
                            lock (gathered)
                            {
                                gathered.Add((root, length, into));
                            }
                        }
                    }
                }
            });

            Assert.Equal(lengths.Length * size, gathered.Count);
            foreach ((int root, int length, float[] values) in gathered)
            {
                float[] expected = [.. Enumerable.Range(0, size).SelectMany(r => CollectiveRanks.Values(r, length))];
                Assert.True(CollectiveRanks.Bits(expected).SequenceEqual(CollectiveRanks.Bits(values)), $"root {root}, length {length}");
            }
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    [InlineData("hybrid")]
    public async Task Broadcast_ZeroToOneMegabyte_EveryRankGetsTheRootsBytes(string transport)
    {
        const int size = 3;
        int[] lengths = [0, 1, 1000, (1 << 20) + 3];
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport);
        try
        {
            var received = new byte[size][][];
            await CollectiveRanks.RunAsync(groups, g =>
            {
                received[g.Rank] = new byte[lengths.Length][];
                for (int k = 0; k < lengths.Length; k++)
                {
                    int root = k % size;
                    byte[] mine = g.Rank == root ? Message(lengths[k]) : [9, 9, 9];
                    received[g.Rank][k] = g.Broadcast(mine, root).ToArray();
                }
            });

            for (int k = 0; k < lengths.Length; k++)
            {
                for (int r = 0; r < size; r++)
                {
                    Assert.True(Message(lengths[k]).AsSpan().SequenceEqual(received[r][k]), $"rank {r}, length {lengths[k]}");
                }
            }
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }

        static byte[] Message(int length) => [.. Enumerable.Range(0, length).Select(i => (byte)((i * 31) + 7))];
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task AllReduceSum_AThousandDecodeSizedInSequence_EachIsTheRankOrderSum(string transport)
    {
        const int size = 3, length = 768, count = 1000;
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport);
        try
        {
            int[] wrong = new int[size];
            await CollectiveRanks.RunAsync(groups, g =>
            {
                for (int i = 0; i < count; i++)
                {
                    float[] values = CollectiveRanks.Values(g.Rank, length, seed: i % 10);
                    g.AllReduceSum(values);
                    if (!CollectiveRanks.Bits(values).SequenceEqual(CollectiveRanks.Bits(CollectiveRanks.RankOrderSum(size, length, seed: i % 10))))
                    {
                        wrong[g.Rank]++;
                    }
                }
            });

            Assert.Equal(new int[size], wrong);
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task AllReduceSum_SteadyState_AllocatesNothing(string transport)
    {
        const int size = 2;
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport);
        try
        {
            long[] allocated = new long[size];
            await CollectiveRanks.RunAsync(groups, g =>
            {
                float[] values = CollectiveRanks.Values(g.Rank, 768);
                for (int i = 0; i < 50; i++)
                {
                    g.AllReduceSum(values);
                }

                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 200; i++)
                {
                    g.AllReduceSum(values);
                }

                allocated[g.Rank] = GC.GetAllocatedBytesForCurrentThread() - before;
            });

            Assert.Equal(new long[size], allocated);
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Fact]
    public async Task JoinAsync_GroupOfOne_NeedsNoNetworkAndKeepsTheValues()
    {
        ICollectiveGroup group = await NetworkCollectives.JoinAsync(new CollectiveMember(0, 1, "127.0.0.1:1", CollectiveRanks.Agreement));
        float[] values = [1.5f, -2f];
        group.AllReduceSum(values);
        Assert.Equal([1.5f, -2f], values);
        Assert.Equal([7, 8, 9], group.Broadcast(new byte[] { 7, 8, 9 }).ToArray());
        group.Dispose();
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    [InlineData("hybrid")]
    public async Task AllReduceSum_ARankDisposes_TheOthersThrowNamingIt(string transport)
    {
        const int size = 3;
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport);
        try
        {
            Exception?[] thrown = await CollectiveRanks.RunCatchingAsync(groups, g =>
            {
                if (g.Rank == 2)
                {
                    g.Dispose();
                    return;
                }

                g.AllReduceSum(new float[768]);
            });

            for (int r = 0; r < 2; r++)
            {
                CollectiveException e = Assert.IsType<CollectiveException>(thrown[r]);
                Assert.Equal(2, e.Rank);
                Assert.Contains("rank 2", e.Message, StringComparison.Ordinal);
                CollectiveException later = Assert.Throws<CollectiveException>(() => groups[r].AllReduceSum(new float[4]));
                Assert.Equal(2, later.Rank);
            }
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task AllReduceSum_ARankNeverCalls_TheOthersThrowNamingItAfterTheTimeout(string transport)
    {
        const int size = 3;
        var options = CollectiveGroupOptions.Default with { OperationTimeout = TimeSpan.FromSeconds(1) };
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport, options);
        try
        {
            Exception?[] thrown = await CollectiveRanks.RunCatchingAsync(groups[..2], g => g.AllReduceSum(new float[768]));
            for (int r = 0; r < 2; r++)
            {
                CollectiveException e = Assert.IsType<CollectiveException>(thrown[r]);
                Assert.Equal(2, e.Rank);
                Assert.Contains("stalled", e.Message, StringComparison.Ordinal);
            }
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Fact]
    public async Task AllReduceSum_RanksCallDifferentLengths_TheyThrowInsteadOfMixingData()
    {
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(2, "tcp");
        try
        {
            Exception?[] thrown = await CollectiveRanks.RunCatchingAsync(groups, g => g.AllReduceSum(new float[g.Rank == 0 ? 10 : 12]));
            Assert.All(thrown, e => Assert.IsType<CollectiveException>(e));
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }
}

using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Tests.Components.Parallel;

/// <summary>
/// Send/Receive of the network group (pipeline parallelism's activations and logits): TCP frames of their own kind,
/// shared-memory mailboxes between ranks of a host, and a mix; a sending thread beside a receiving one; the same
/// failure contract as the collectives.
/// </summary>
public class NetworkCollectivesPointToPointTests
{
    private static readonly int[] s_lengths = [0, 1, 768, 300_000, 5];

    private static readonly CollectiveGroupOptions s_tinyPieces = CollectiveGroupOptions.Default with { PieceBytes = 4096, SmallMessageBytes = 1024 };

    [Theory]
    [InlineData(2, "tcp", false)]
    [InlineData(3, "tcp", false)]
    [InlineData(2, "shm", false)]
    [InlineData(3, "shm", false)]
    [InlineData(3, "shm", true)]
    [InlineData(4, "hybrid", false)]
    [InlineData(4, "hybrid", true)]
    public async Task SendReceive_AlongAPipelineAndBack_ArriveInOrderBitwiseAndCollectivesStillWork(int size, string transport, bool tinyPieces)
    {
        const int rounds = 20;
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(size, transport, tinyPieces ? s_tinyPieces : null);
        try
        {
            int[] wrong = new int[size];
            float[][] sums = new float[size][];
            await CollectiveRanks.RunAsync(groups, g =>
            {
                // Stage r receives from r - 1 and sends to r + 1; the last sends back to rank 0 (the logits' way). Sends
                // go from a thread of their own, as the pipeline's sender does, while this thread receives.
                int next = (g.Rank + 1) % size, previous = (g.Rank + size - 1) % size;
                var sender = Task.Factory.StartNew(
                    () =>
                    {
                        for (int round = 0; round < rounds; round++)
                        {
                            foreach (int length in s_lengths)
                            {
                                g.Send(CollectiveRanks.Values(g.Rank, length, seed: round), next);
                            }
                        }
                    },
                    CancellationToken.None,
                    TaskCreationOptions.LongRunning,
                    TaskScheduler.Default);
                for (int round = 0; round < rounds; round++)
                {
                    foreach (int length in s_lengths)
                    {
                        float[] received = new float[length];
                        g.Receive(received, previous);
                        if (!CollectiveRanks.Bits(received).SequenceEqual(CollectiveRanks.Bits(CollectiveRanks.Values(previous, length, seed: round))))
                        {
                            wrong[g.Rank]++;
                        }
                    }
                }

                sender.Wait();
                float[] values = CollectiveRanks.Values(g.Rank, 768);
                g.AllReduceSum(values);
                sums[g.Rank] = values;
            });

            Assert.Equal(new int[size], wrong);
            int[] expected = CollectiveRanks.Bits(CollectiveRanks.RankOrderSum(size, 768));
            Assert.All(sums, s => Assert.Equal(expected, CollectiveRanks.Bits(s)));
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task Receive_PeerDisposes_ThrowsNamingIt(string transport)
    {
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(2, transport);
        try
        {
            Exception?[] thrown = await CollectiveRanks.RunCatchingAsync(groups, g =>
            {
                if (g.Rank == 1)
                {
                    g.Send(new float[3], 0);
                    g.Dispose();
                    return;
                }

                g.Receive(new float[3], 1);
                g.Receive(new float[3], 1);
            });

            CollectiveException e = Assert.IsType<CollectiveException>(thrown[0]);
            Assert.Equal(1, e.Rank);
            Assert.Contains("rank 1", e.Message, StringComparison.Ordinal);
            Assert.Equal(1, Assert.Throws<CollectiveException>(() => groups[0].AllReduceSum(new float[4])).Rank);
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task Receive_PeerSendsNothing_ThrowsNamingItAfterTheTimeout(string transport)
    {
        var options = CollectiveGroupOptions.Default with { OperationTimeout = TimeSpan.FromSeconds(1) };
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(2, transport, options);
        try
        {
            Exception?[] thrown = await CollectiveRanks.RunCatchingAsync(groups[..1], g => g.Receive(new float[768], 1));
            CollectiveException e = Assert.IsType<CollectiveException>(thrown[0]);
            Assert.Equal(1, e.Rank);
            Assert.Contains("sent nothing", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Theory]
    [InlineData("tcp")]
    [InlineData("shm")]
    public async Task Receive_OtherLength_ThrowsInsteadOfMixingData(string transport)
    {
        ICollectiveGroup[] groups = await CollectiveRanks.JoinAsync(2, transport);
        try
        {
            Exception?[] thrown = await CollectiveRanks.RunCatchingAsync(groups, g =>
            {
                if (g.Rank == 1)
                {
                    g.Send(new float[12], 0);
                }
                else
                {
                    g.Receive(new float[10], 1);
                }
            });

            CollectiveException e = Assert.IsType<CollectiveException>(thrown[0]);
            Assert.Equal(1, e.Rank);
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Fact]
    public void SendReceive_InProcessTwin_SameContract()
    {
        ICollectiveGroup[] groups = InProcessCollectives.Create(3, TimeSpan.FromSeconds(1));
        try
        {
            groups[0].Send([1f, 2f], 2);
            groups[0].Send([3f], 2);
            float[] first = new float[2], second = new float[1];
            groups[2].Receive(first, 0);
            groups[2].Receive(second, 0);
            Assert.Equal([1f, 2f], first);
            Assert.Equal([3f], second);
            Assert.Equal(1, Assert.Throws<CollectiveException>(() => groups[0].Receive(new float[1], 1)).Rank);
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }
}

using System.Net;
using System.Net.Sockets;
using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Tests.Components.Parallel;

/// <summary>
/// The TCP collectives of tensor-parallel ranks, with the ranks as threads of this process over real loopback sockets:
/// results are the rank-order sums on every rank, bit for bit; ranks meet in any order; disagreements are one line on
/// both sides; a lost rank is named.
/// </summary>
public sealed class TcpCollectiveGroupTests
{
    private static string FreeAddress()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return $"127.0.0.1:{((IPEndPoint)l.LocalEndpoint).Port}";
    }

    private static TcpCollectiveOptions Options(int rank, int size, string address, string fingerprint = "f", string layout = "l", double timeout = 60) =>
        new() { Rank = rank, Size = size, InitAddress = address, Fingerprint = fingerprint, Layout = layout, Timeout = TimeSpan.FromSeconds(timeout) };

    /// <summary>Forms a group of <paramref name="size"/>, rank <paramref name="size"/> - 1 first and rank 0 last.</summary>
    private static async Task<TcpCollectiveGroup[]> FormAsync(int size)
    {
        string address = FreeAddress();
        Task<TcpCollectiveGroup>[] joins = [.. Enumerable.Range(0, size).Reverse().Select(r => TcpCollectiveGroup.JoinAsync(Options(r, size, address)))];
        TcpCollectiveGroup[] groups = await Task.WhenAll(joins);
        return [.. groups.OrderBy(g => g.Rank)];
    }

    /// <summary>Runs <paramref name="work"/> on every rank, each on its own thread (the collectives block).</summary>
    private static Task<T[]> OnEveryRank<T>(TcpCollectiveGroup[] groups, Func<ICollectiveGroup, T> work) =>
        Task.WhenAll(groups.Select(g => Task.Factory.StartNew(() => work(g), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)));

    private static float[] Values(int rank, int length) =>
        [.. Enumerable.Range(0, length).Select(i => (float)Math.Sin(rank * 1000 + i) * (1 + rank * 0.37f))];

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public async Task AllReduceSum_EveryRankHoldsTheRankOrderSum(int size)
    {
        TcpCollectiveGroup[] groups = await FormAsync(size);
        try
        {
            foreach (int length in new[] { 0, 1, 7, 768, 100_000 })
            {
                float[][] results = await OnEveryRank(groups, g =>
                {
                    float[] v = Values(g.Rank, length);
                    g.AllReduceSum(v);
                    return v;
                });
                float[] expected = Values(0, length);
                for (int r = 1; r < size; r++)
                {
                    float[] add = Values(r, length);
                    for (int i = 0; i < length; i++)
                    {
                        expected[i] += add[i];
                    }
                }

                foreach (float[] result in results)
                {
                    Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), result.Select(BitConverter.SingleToInt32Bits));
                }
            }
        }
        finally
        {
            foreach (TcpCollectiveGroup g in groups)
            {
                g.Dispose();
            }
        }
    }

    [Fact]
    public async Task GatherBroadcastAndManySmallAllReduces_InSequence()
    {
        TcpCollectiveGroup[] groups = await FormAsync(3);
        try
        {
            byte[] message = [.. Enumerable.Range(0, 1 << 20).Select(i => (byte)(i * 7))];
            var results = await OnEveryRank(groups, g =>
            {
                float[] gathered = g.Rank == 0 ? new float[3 * 5] : [];
                g.Gather(Values(g.Rank, 5), gathered);
                byte[] empty = g.Broadcast(g.Rank == 0 ? ReadOnlyMemory<byte>.Empty : new byte[] { 9 }).ToArray();
                byte[] big = g.Broadcast(g.Rank == 0 ? message : ReadOnlyMemory<byte>.Empty).ToArray();
                float last = 0;
                for (int i = 0; i < 1000; i++)
                {
                    Span<float> one = [g.Rank + i];
                    g.AllReduceSum(one);
                    last = one[0];
                }

                return (gathered, empty, big, last);
            });

            Assert.Equal([.. Values(0, 5), .. Values(1, 5), .. Values(2, 5)], results[0].gathered);
            Assert.All(results, r => Assert.Empty(r.empty));
            Assert.All(results, r => Assert.Equal(message, r.big));
            Assert.All(results, r => Assert.Equal(0 + 1 + 2 + 3 * 999, r.last));
        }
        finally
        {
            foreach (TcpCollectiveGroup g in groups)
            {
                g.Dispose();
            }
        }
    }

    [Fact]
    public async Task Join_DifferentModel_RefusedOnBothSidesInOneLine()
    {
        string address = FreeAddress();
        Task<TcpCollectiveGroup> leader = TcpCollectiveGroup.JoinAsync(Options(0, 2, address, fingerprint: "aaaa"));
        Task<TcpCollectiveGroup> follower = TcpCollectiveGroup.JoinAsync(Options(1, 2, address, fingerprint: "bbbb"));
        var a = await Assert.ThrowsAsync<CollectiveException>(() => leader);
        var b = await Assert.ThrowsAsync<CollectiveException>(() => follower);
        Assert.Contains("rank 1 disagrees with rank 0 on the model: fingerprint bbbb vs aaaa", a.Message, StringComparison.Ordinal);
        Assert.Contains("rank 1 disagrees with rank 0 on the model: fingerprint bbbb vs aaaa", b.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', a.Message + b.Message);
    }

    [Fact]
    public async Task Join_DifferentLayoutOrSize_Refused()
    {
        string address = FreeAddress();
        Task<TcpCollectiveGroup> leader = TcpCollectiveGroup.JoinAsync(Options(0, 2, address, layout: "tp 2: 4 of 8 heads"));
        var b = await Assert.ThrowsAsync<CollectiveException>(() => TcpCollectiveGroup.JoinAsync(Options(1, 2, address, layout: "tp 2: 2 of 4 heads")));
        Assert.Contains("disagrees with rank 0 on the shard layout", b.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<CollectiveException>(() => leader);

        address = FreeAddress();
        leader = TcpCollectiveGroup.JoinAsync(Options(0, 2, address));
        var c = await Assert.ThrowsAsync<CollectiveException>(() => TcpCollectiveGroup.JoinAsync(Options(1, 4, address)));
        Assert.Contains("rank 1 was started with --tensor-parallel-size 4, rank 0 with 2", c.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<CollectiveException>(() => leader);
    }

    [Fact]
    public async Task Join_SameRankTwice_SecondRefused()
    {
        string address = FreeAddress();
        Task<TcpCollectiveGroup> leader = TcpCollectiveGroup.JoinAsync(Options(0, 3, address));
        using TcpCollectiveGroup first = await JoinWhenListeningAsync(Options(1, 3, address), leader);
        var e = await Assert.ThrowsAsync<CollectiveException>(() => TcpCollectiveGroup.JoinAsync(Options(1, 3, address)));
        Assert.Contains("rank 1 connected twice", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<CollectiveException>(() => leader);
    }

    /// <summary>Rank 1's join completes only when the group is whole; here it is not, so wait for rank 0 to have answered it.</summary>
    private static async Task<TcpCollectiveGroup> JoinWhenListeningAsync(TcpCollectiveOptions options, Task leader)
    {
        Task<TcpCollectiveGroup> join = TcpCollectiveGroup.JoinAsync(options);
        return await join.WaitAsync(TimeSpan.FromSeconds(60)) is { } g && !leader.IsCompleted ? g : throw new InvalidOperationException("rank 0 finished first");
    }

    [Fact]
    public async Task Join_NoRankZero_OneLineAfterTheTimeout()
    {
        string address = FreeAddress();
        var e = await Assert.ThrowsAsync<CollectiveException>(() => TcpCollectiveGroup.JoinAsync(Options(1, 2, address, timeout: 1)));
        Assert.Equal($"rank 1 of 2: no rank 0 answered at {address} within 1 s", e.Message);
    }

    [Fact]
    public async Task AllReduce_RankLost_EveryOtherRankNamesIt()
    {
        TcpCollectiveGroup[] groups = await FormAsync(3);
        try
        {
            groups[2].Dispose();
            CollectiveException?[] errors = await OnEveryRank(groups[..2], g =>
            {
                try
                {
                    float[] v = [1, 2, 3];
                    g.AllReduceSum(v);
                    return null;
                }
                catch (CollectiveException e)
                {
                    return e;
                }
            });

            Assert.All(errors, e =>
            {
                Assert.NotNull(e);
                Assert.Equal(2, e.Rank);
                Assert.Contains("rank 2 of the tensor-parallel group was lost", e.Message, StringComparison.Ordinal);
            });
        }
        finally
        {
            foreach (TcpCollectiveGroup g in groups)
            {
                g.Dispose();
            }
        }
    }
}

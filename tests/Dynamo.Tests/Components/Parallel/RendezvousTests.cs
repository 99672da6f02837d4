using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Tests.Components.Parallel;

public class RendezvousTests
{
    [Fact]
    public async Task JoinAsync_RankOneStartsBeforeRankZero_TheGroupForms()
    {
        string address = CollectiveRanks.FreeAddress();
        Task<ICollectiveGroup> rank1 = NetworkCollectives.JoinAsync(new CollectiveMember(1, 2, address, CollectiveRanks.Agreement));
        Assert.False(rank1.IsCompleted);
        Task<ICollectiveGroup> rank0 = NetworkCollectives.JoinAsync(new CollectiveMember(0, 2, address, CollectiveRanks.Agreement));
        ICollectiveGroup[] groups = await Task.WhenAll(rank0, rank1).WaitAsync(CollectiveRanks.HangLimit);
        try
        {
            float[][] values = [[1f, 2f], [10f, 20f]];
            await CollectiveRanks.RunAsync(groups, g => g.AllReduceSum(values[g.Rank]));
            Assert.Equal([11f, 22f], values[0]);
            Assert.Equal([11f, 22f], values[1]);
        }
        finally
        {
            CollectiveRanks.DisposeAll(groups);
        }
    }

    [Fact]
    public async Task JoinAsync_AgreementsDiffer_BothSidesFailWithTheSameLine()
    {
        string address = CollectiveRanks.FreeAddress();
        Task<ICollectiveGroup> rank0 = NetworkCollectives.JoinAsync(new CollectiveMember(0, 2, address, CollectiveAgreement.FromText("model sha256 cd34")));
        Task<ICollectiveGroup> rank1 = NetworkCollectives.JoinAsync(new CollectiveMember(1, 2, address, CollectiveAgreement.FromText("model sha256 ab12")));
        CollectiveException on0 = await Assert.ThrowsAsync<CollectiveException>(() => rank0.WaitAsync(CollectiveRanks.HangLimit));
        CollectiveException on1 = await Assert.ThrowsAsync<CollectiveException>(() => rank1.WaitAsync(CollectiveRanks.HangLimit));
        Assert.Equal("rank 1 disagrees with rank 0: model sha256 ab12 vs model sha256 cd34", on0.Message);
        Assert.Equal(on0.Message, on1.Message);
        Assert.Equal(1, on0.Rank);
        Assert.Equal(0, on1.Rank);
    }

    [Fact]
    public async Task JoinAsync_SizesDiffer_BothSidesFailNamingTheSizes()
    {
        string address = CollectiveRanks.FreeAddress();
        Task<ICollectiveGroup> rank0 = NetworkCollectives.JoinAsync(new CollectiveMember(0, 2, address, CollectiveRanks.Agreement));
        Task<ICollectiveGroup> rank1 = NetworkCollectives.JoinAsync(new CollectiveMember(1, 3, address, CollectiveRanks.Agreement));
        CollectiveException on0 = await Assert.ThrowsAsync<CollectiveException>(() => rank0.WaitAsync(CollectiveRanks.HangLimit));
        CollectiveException on1 = await Assert.ThrowsAsync<CollectiveException>(() => rank1.WaitAsync(CollectiveRanks.HangLimit));
        Assert.Equal("rank 1 disagrees with rank 0: tensor-parallel size 3 vs 2", on0.Message);
        Assert.Equal(on0.Message, on1.Message);
    }

    [Fact]
    public async Task JoinAsync_TwoProcessesClaimOneRank_EveryoneIsRefused()
    {
        string address = CollectiveRanks.FreeAddress();
        Task<ICollectiveGroup> rank0 = NetworkCollectives.JoinAsync(new CollectiveMember(0, 3, address, CollectiveRanks.Agreement));
        Task<ICollectiveGroup> first = NetworkCollectives.JoinAsync(new CollectiveMember(1, 3, address, CollectiveRanks.Agreement));
        Task<ICollectiveGroup> second = NetworkCollectives.JoinAsync(new CollectiveMember(1, 3, address, CollectiveRanks.Agreement));
        CollectiveException on0 = await Assert.ThrowsAsync<CollectiveException>(() => rank0.WaitAsync(CollectiveRanks.HangLimit));
        Assert.StartsWith("rank 0: two processes claim rank 1", on0.Message, StringComparison.Ordinal);
        foreach (Task<ICollectiveGroup> claimant in new[] { first, second })
        {
            CollectiveException refused = await Assert.ThrowsAsync<CollectiveException>(() => claimant.WaitAsync(CollectiveRanks.HangLimit));
            Assert.Equal(on0.Message, refused.Message);
        }
    }

    [Fact]
    public async Task JoinAsync_NoRankZero_FailsAfterTheStartTimeoutWithOneLine()
    {
        string address = CollectiveRanks.FreeAddress();
        var options = CollectiveGroupOptions.Default with { StartTimeout = TimeSpan.FromSeconds(1) };
        CollectiveException e = await Assert.ThrowsAsync<CollectiveException>(
            () => NetworkCollectives.JoinAsync(new CollectiveMember(1, 2, address, CollectiveRanks.Agreement), options).WaitAsync(CollectiveRanks.HangLimit));
        Assert.Equal($"rank 1: no rank 0 at {address} after 1 s", e.Message);
        Assert.Equal(0, e.Rank);
    }

    [Fact]
    public async Task JoinAsync_ARankNeverJoins_RankZeroAndTheJoinedFailNamingIt()
    {
        string address = CollectiveRanks.FreeAddress();
        var options = CollectiveGroupOptions.Default with { StartTimeout = TimeSpan.FromSeconds(2) };
        Task<ICollectiveGroup> rank0 = NetworkCollectives.JoinAsync(new CollectiveMember(0, 3, address, CollectiveRanks.Agreement), options);
        Task<ICollectiveGroup> rank1 = NetworkCollectives.JoinAsync(new CollectiveMember(1, 3, address, CollectiveRanks.Agreement), options with { StartTimeout = TimeSpan.FromMinutes(2) });
        CollectiveException on0 = await Assert.ThrowsAsync<CollectiveException>(() => rank0.WaitAsync(CollectiveRanks.HangLimit));
        Assert.Equal($"rank 0: rank 2 of 3 did not join at {address} within 2 s", on0.Message);
        Assert.Equal(2, on0.Rank);
        CollectiveException on1 = await Assert.ThrowsAsync<CollectiveException>(() => rank1.WaitAsync(CollectiveRanks.HangLimit));
        Assert.Equal(on0.Message, on1.Message);
    }

    [Fact]
    public void Member_Validate_NamesTheFlag()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => new CollectiveMember(0, 2, "nohost", CollectiveRanks.Agreement).Validate());
        Assert.Contains("--dist-init-addr", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new CollectiveMember(2, 2, "127.0.0.1:5000", CollectiveRanks.Agreement).Validate());
    }
}

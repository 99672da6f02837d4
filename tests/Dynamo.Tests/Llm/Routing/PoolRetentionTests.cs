using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Tests.Mocker;

namespace Dynamo.Tests.Llm.Routing;

public sealed class PoolRetentionTests
{
    /// <summary>Reports the pool every second for <paramref name="seconds"/> seconds while <paramref name="blocksPerSecond"/> new blocks arrive.</summary>
    private static void Run(PoolRetention retention, ManualTimeProvider time, int seconds, int blocksPerSecond, int total, int used)
    {
        for (int s = 0; s < seconds; s++)
        {
            retention.Added(blocksPerSecond);
            time.Advance(TimeSpan.FromSeconds(1));
            retention.Reported(total, used, time.GetTimestamp(), time);
        }
    }

    [Fact]
    public void Retention_BeforeAReportAndARate_IsTheDefault()
    {
        var time = new ManualTimeProvider();
        var retention = new PoolRetention();
        Assert.Equal(PoolRetention.DefaultRetention, retention.Retention());

        retention.Added(100);
        retention.Reported(1000, 0, time.GetTimestamp(), time); // starts the first interval only
        Assert.Equal(PoolRetention.DefaultRetention, retention.Retention());
        Assert.Equal(1000, retention.TotalBlocks);
    }

    [Fact]
    public void Retention_FollowsTotalBlocksOverTheNewBlockRate()
    {
        var time = new ManualTimeProvider();
        var retention = new PoolRetention();
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        retention.Added(100);
        time.Advance(TimeSpan.FromSeconds(10));
        retention.Reported(1000, 0, time.GetTimestamp(), time);

        Assert.Equal(10, retention.BlocksPerSecond, 9);
        Assert.Equal(100, retention.Retention().TotalSeconds, 1e-3);

        Run(retention, time, 60, 10, 2000, 0); // a pool twice as large at the same rate: the free blocks are smoothed towards 2000
        Assert.InRange(retention.Retention().TotalSeconds, 170, 200);
        Run(retention, time, 600, 10, 2000, 0);
        Assert.Equal(200, retention.Retention().TotalSeconds, 1e-2);
    }

    [Fact]
    public void Retention_BlocksInUse_AreNotFreeToEvict()
    {
        var time = new ManualTimeProvider();
        var retention = new PoolRetention();
        retention.Reported(1000, 600, time.GetTimestamp(), time);
        Run(retention, time, 10, 8, 1000, 600);
        Assert.Equal(50, retention.Retention().TotalSeconds, 1e-3); // 400 free blocks at 8 a second
    }

    [Fact]
    public void Retention_RateDoubles_EstimateMovesTowardsHalfSmoothly()
    {
        var time = new ManualTimeProvider();
        var retention = new PoolRetention();
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        Run(retention, time, 10, 10, 1000, 0);
        Assert.Equal(100, retention.Retention().TotalSeconds, 1e-3);

        Run(retention, time, 1, 20, 1000, 0); // one second at twice the rate moves the average 1 - e^(-1/30) of the way
        double rate = 10 + (10 * (1 - Math.Exp(-1 / PoolRetention.SmoothingTime.TotalSeconds)));
        Assert.Equal(1000 / rate, retention.Retention().TotalSeconds, 1e-5);

        Run(retention, time, 300, 20, 1000, 0);
        Assert.Equal(50, retention.Retention().TotalSeconds, 0.1);
    }

    [Fact]
    public void Retention_OutOfRange_IsClampedToTheFloorAndTheCeiling()
    {
        var time = new ManualTimeProvider();
        var busy = new PoolRetention();
        busy.Reported(100, 0, time.GetTimestamp(), time);
        Run(busy, time, 5, 10_000, 100, 0);
        Assert.Equal(PoolRetention.MinRetention, busy.Retention());

        var idle = new PoolRetention();
        idle.Reported(100, 0, time.GetTimestamp(), time);
        Run(idle, time, 5, 0, 100, 0);
        Assert.Equal(PoolRetention.MaxRetention, idle.Retention());
    }

    [Fact]
    public void Reported_CloserThanTheSampleInterval_KeepsCountingTheBlocks()
    {
        var time = new ManualTimeProvider();
        var retention = new PoolRetention();
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        retention.Added(5);
        time.Advance(TimeSpan.FromMilliseconds(100));
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        Assert.Equal(PoolRetention.DefaultRetention, retention.Retention());

        retention.Added(5);
        time.Advance(TimeSpan.FromMilliseconds(900));
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        Assert.Equal(10, retention.BlocksPerSecond, 9); // 10 blocks over the whole second
    }

    [Fact]
    public void Corrected_MoreCachedThanCharged_NotNewBlocks()
    {
        var time = new ManualTimeProvider();
        var retention = new PoolRetention();
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        retention.Added(100);
        retention.Corrected(-50); // the engine found 50 of them cached
        time.Advance(TimeSpan.FromSeconds(10));
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        Assert.Equal(5, retention.BlocksPerSecond, 9);

        retention.Corrected(-500); // more than were sent: none new, not fewer than none
        time.Advance(TimeSpan.FromSeconds(10));
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        Assert.True(retention.BlocksPerSecond is > 0 and < 5);
    }
    [Theory]
    [InlineData(40, 30, 2)] // 70 tokens fill 5 blocks, the prompt's 40 three (its partial last one counted with it)
    [InlineData(32, 16, 1)] // a full prompt: the output's one block is new
    [InlineData(32, 17, 2)]
    [InlineData(40, 8, 0)] // the output only fills the prompt's partial last block
    [InlineData(40, 0, 0)]
    public void Generated_OutputTokens_TheBlocksTheyFillBeyondThePromptsAreNew(int prompt, int output, int newBlocks)
    {
        var time = new ManualTimeProvider();
        var retention = new PoolRetention();
        retention.Reported(1000, 0, time.GetTimestamp(), time);
        retention.Generated(prompt, output, 16);
        time.Advance(TimeSpan.FromSeconds(1));
        retention.Reported(1000, 0, time.GetTimestamp(), time);

        Assert.Equal(newBlocks, retention.BlocksPerSecond, 9);
    }

    [Fact]
    public void OnComplete_OutputTokensKnown_CountInTheWorkersRateAndItsRetentionInTheStats()
    {
        static TimeSpan RetentionAfter(int? outputTokens)
        {
            var time = new ManualTimeProvider();
            var router = new KvRouter(KvRouterOptions.Default with { BlockSize = 16, Seed = 1 }, time);
            router.AddWorker(1);
            router.UpdateLoad(new WorkerLoad { WorkerId = 1, KvBlocksTotal = 100, KvBlocksUsed = 0 });
            Assert.Equal(PoolRetention.DefaultRetention, Assert.Single(router.GetStats().Workers).PrefixRetention);
            ValueTask<RoutingDecision> routed = router.RouteAsync([.. Enumerable.Range(0, 64)]); // 4 new prompt blocks
            Assert.True(routed.IsCompletedSuccessfully);
            routed.Result.Complete(0, outputTokens);
            time.Advance(TimeSpan.FromSeconds(10));
            router.UpdateLoad(new WorkerLoad { WorkerId = 1, KvBlocksTotal = 100, KvBlocksUsed = 0 });
            return Assert.Single(router.GetStats().Workers).PrefixRetention;
        }

        Assert.Equal(250, RetentionAfter(null).TotalSeconds, 1e-6); // 100 free blocks / (4 blocks / 10 s)
        Assert.Equal(100 / 1.4, RetentionAfter(160).TotalSeconds, 1e-6); // and 10 output blocks
    }
}

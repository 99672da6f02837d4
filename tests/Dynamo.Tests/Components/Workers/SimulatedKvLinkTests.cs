using Dynamo.Components.Workers;

namespace Dynamo.Tests.Components.Workers;

public sealed class SimulatedKvLinkTests
{
    [Fact]
    public void Default_The110mModelsF32KvOver10GbitsWith50Microseconds()
    {
        SimulatedKvLink link = SimulatedKvLink.Default;

        Assert.Equal(73_728, link.BytesPerToken);
        Assert.Equal(2000 * 73_728L, link.Bytes(2000));
        // 147,456,000 bytes = 1,179,648,000 bits at 10^10 bits/s = 117.9648 ms, plus 50 µs.
        Assert.Equal(TimeSpan.FromMilliseconds(117.9648) + TimeSpan.FromMicroseconds(50), link.TransferTime(2000));
    }

    [Fact]
    public void ScaledBy_TimesDividedByTheSpeedup()
    {
        SimulatedKvLink link = SimulatedKvLink.Default with { BytesPerToken = 1000, Gbps = 1, Latency = TimeSpan.FromMilliseconds(2) };

        Assert.Equal(TimeSpan.FromMilliseconds(10), link.TransferTime(1000));
        Assert.Equal(TimeSpan.FromMilliseconds(100), link.ScaledBy(0.1).TransferTime(1000));
        Assert.Equal(TimeSpan.FromMilliseconds(1), link.ScaledBy(10).TransferTime(1000));
        Assert.Equal(1000 * 1000L, link.ScaledBy(10).Bytes(1000));
    }

    [Theory]
    [InlineData(0, 10, 0, "--kv-bytes-per-token")]
    [InlineData(8, 0, 0, "--link-gbps")]
    [InlineData(8, double.PositiveInfinity, 0, "--link-gbps")]
    [InlineData(8, 10, -1, "--link-latency-us")]
    public void Validate_BadValue_NamesTheFlag(long bytesPerToken, double gbps, double latencyUs, string flag)
    {
        var link = new SimulatedKvLink { BytesPerToken = bytesPerToken, Gbps = gbps, Latency = TimeSpan.FromMicroseconds(latencyUs) };

        Assert.StartsWith(flag, Assert.Throws<ArgumentException>(() => link.Validate()).Message);
        Assert.StartsWith(flag, Assert.Throws<ArgumentException>(() => (EngineWorkerOptions.Default with { SimulatedLink = link }).Validate()).Message);
    }
}

using Dynamo.Runtime.RequestPlane;
using static Dynamo.Tests.Runtime.RequestPlane.TestHandlers;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>What only the in-process plane has; the contract both planes keep is in <see cref="RequestPlaneContractTests"/>.</summary>
public class InProcessRequestPlaneTests
{
    [Theory]
    [InlineData(null, "workers")]
    [InlineData("workers", null)]
    [InlineData("workers", "others")]
    public async Task ServeAsync_SubjectAlreadyServedOutsideTheQueueGroup_Throws(string? first, string? second)
    {
        await using var plane = new InProcessRequestPlane();
        await using IAsyncDisposable serving = await plane.ServeAsync("s", (_, _, _) => One("first"), first);

        InvalidOperationException e = await Assert.ThrowsAsync<InvalidOperationException>(() => plane.ServeAsync("s", (_, _, _) => One("second"), second));

        Assert.Contains("'s' is already served", e.Message);
        Assert.Equal(["first"], await StringsAsync(plane.RequestStreamAsync("s", default, RequestOptions.Default)));
    }

    [Fact]
    public async Task ServeAsync_SubjectServedAgainInItsQueueGroupAfterTheOtherLeft_Serves()
    {
        await using var plane = new InProcessRequestPlane();
        IAsyncDisposable first = await plane.ServeAsync("s", (_, _, _) => One("first"));
        await first.DisposeAsync();

        await using IAsyncDisposable second = await plane.ServeAsync("s", (_, _, _) => One("second"), "workers");

        Assert.Equal(["second"], await StringsAsync(plane.RequestStreamAsync("s", default, RequestOptions.Default)));
    }

    [Theory]
    [InlineData(0, 1, 1, "ResponseWindow")]
    [InlineData(1, 0, 1, "AckTimeout")]
    [InlineData(1, 1, 0, "MaxPayload")]
    public void Constructor_SettingOutOfRange_ArgumentExceptionNamingIt(int window, int ackTimeoutMs, int maxPayload, string setting)
    {
        var options = InProcessRequestPlaneOptions.Default with { ResponseWindow = window, AckTimeout = TimeSpan.FromMilliseconds(ackTimeoutMs), MaxPayload = maxPayload };

        ArgumentException e = Assert.Throws<ArgumentException>(() => new InProcessRequestPlane(options));

        Assert.StartsWith(setting, e.Message);
    }
}

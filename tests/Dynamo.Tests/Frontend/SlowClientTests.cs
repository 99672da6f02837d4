using Dynamo.Frontend;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Frontend;

/// <summary>The slow-client limits: a client that trickles its headers or body is cut off. Wall-clock bound, so not in parallel.</summary>
[Collection(TimingCollection.Name)]
public class SlowClientTests
{
    [Fact]
    public async Task Body_UnderTheMinimumRateAfterTheGracePeriod_408OpenAiError()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { MinRequestBodyBytesPerSecond = 1000, MinRequestBodyRateGracePeriod = TimeSpan.FromSeconds(1.5) });
        await h.AddWorkerAsync(FrontendHarness.Echo());
        using RawHttp client = await RawHttp.ConnectAsync(h.Server.BaseAddress);

        await client.WriteAsync("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"model\":\"tiny\",");
        RawHttp.Response response = await client.ReadResponseAsync();

        Assert.Equal(408, response.Status);
        Assert.Equal("request_timeout", response.Error().GetProperty("code").GetString());
    }

    [Fact]
    public async Task Headers_NotFinishedWithinTheTimeout_408OpenAiErrorThenClosed()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(FrontendOptions.Default with { RequestHeadersTimeout = TimeSpan.FromSeconds(1) });
        using RawHttp client = await RawHttp.ConnectAsync(h.Server.BaseAddress);
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(15)); // the default timeout is 30 s

        await client.WriteAsync("GET /live HTTP/1.1\r\nHost: x\r\n");
        RawHttp.Response response = await client.ReadResponseAsync(patience.Token);

        Assert.Equal(408, response.Status);
        Assert.Equal("request_timeout", response.Error().GetProperty("code").GetString());
        Assert.True(await client.ClosedByServerAsync(patience.Token));
    }
}

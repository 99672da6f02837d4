using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Dynamo.Components.ModelCards;
using Dynamo.Components.Workers;
using Dynamo.Frontend;
using Dynamo.Llm.ModelCards;
using Dynamo.Runtime;
using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Runtime;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// The frontend while NATS is down: a frontend and a worker whose request planes are NATS (a real nats-server,
/// which the test kills and restarts), discovery and events in process. /health says the request plane is
/// down, a request fails within the plane's bound with 503 naming the reason, and both recover with NATS.
/// </summary>
[Trait("Category", "Slow")]
[Collection(TimingCollection.Name)]
public sealed class FrontendNatsOutageTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(1);
    private readonly List<IAsyncDisposable> _cleanup = [];
    private readonly InMemoryDiscoveryStore _store = new();
    private readonly InProcessEventPlane _events = new();
    private NatsServer _nats = null!;

    public async Task InitializeAsync() => _nats = await NatsServer.StartAsync();

    public async Task DisposeAsync()
    {
        for (int i = _cleanup.Count - 1; i >= 0; i--)
        {
            await _cleanup[i].DisposeAsync();
        }

        await _events.DisposeAsync();
        await _nats.DisposeAsync();
    }

    [Fact]
    public async Task Health_And_Requests_NatsDown_503NamingTheRequestPlane_ThenBackAfterRestart()
    {
        NatsPlaneOptions options = NatsPlaneOptions.Default with { Url = _nats.Url, UnavailableTimeout = Bound };
        NatsRequestPlane workerPlane = Own(await NatsRequestPlane.ConnectAsync(options));
        NatsRequestPlane frontendPlane = Own(await NatsRequestPlane.ConnectAsync(options));
        DistributedRuntime workerRuntime = Own(await RuntimeAsync(workerPlane));
        var address = new EndpointAddress("dynamo", "backend", "generate");
        Own(await EngineWorker.StartAsync(workerRuntime, FrontendHarness.Echo(), address));
        await ModelCardStore.PublishAsync(workerRuntime, address, new ModelCardSource(FrontendHarness.Model, "gguf", FrontendHarness.TinyChatModel.Value, 256, 16, 512), "aggregated");
        FrontendOptions frontendOptions = FrontendOptions.Default with { Host = "127.0.0.1", HttpPort = 0 };
        frontendOptions = frontendOptions with { Processing = frontendOptions.Processing with { TokenizerCacheDirectory = FrontendHarness.TokenizerCache } };
        FrontendServer frontend = Own(await FrontendServer.StartAsync(Own(await RuntimeAsync(frontendPlane)), frontendOptions, NullLoggerFactory.Instance));
        using var http = new HttpClient { BaseAddress = frontend.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        await frontend.WaitForModelAsync(FrontendHarness.Model).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(HttpStatusCode.OK, await CompleteAsync(http));
        (HttpStatusCode status, JsonElement health) = await HealthAsync(http);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("healthy", health.GetProperty("status").GetString());
        Assert.False(health.TryGetProperty("reason", out _));
        Assert.Equal("nats", health.GetProperty("request_plane").GetProperty("name").GetString());
        Assert.True(health.GetProperty("request_plane").GetProperty("connected").GetBoolean());

        _nats.Kill();
        await Eventually.WaitUntilAsync(() => frontendPlane.Health.DisconnectedSince is not null, "the frontend's plane to notice");
        (status, health) = await HealthAsync(http);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Equal("unhealthy", health.GetProperty("status").GetString());
        Assert.StartsWith("request plane unavailable: NATS at ", health.GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.False(health.GetProperty("request_plane").GetProperty("connected").GetBoolean());
        Assert.True(health.GetProperty("request_plane").TryGetProperty("disconnected_since", out _));

        var clock = Stopwatch.StartNew();
        using (HttpResponseMessage refused = await PostAsync(http))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            JsonElement error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
            Assert.Equal("request_plane_unavailable", error.GetProperty("code").GetString());
        }

        Assert.InRange(clock.Elapsed, TimeSpan.Zero, Bound + TimeSpan.FromSeconds(2));

        await _nats.RestartAsync();
        await Eventually.WaitUntilAsync(() => frontendPlane.Health.IsConnected && workerPlane.Health.IsConnected, "both planes to reconnect");
        Assert.Equal(HttpStatusCode.OK, (await HealthAsync(http)).Status);

        // The worker's subscriptions come back a moment after its connection.
        clock.Restart();
        while (await CompleteAsync(http) != HttpStatusCode.OK)
        {
            Assert.True(clock.Elapsed < Eventually.Patience, "no completion succeeded after NATS came back");
            await Task.Delay(100);
        }
    }

    private static Task<HttpResponseMessage> PostAsync(HttpClient http) =>
        http.PostAsync("/v1/completions", new StringContent("""{"model":"tiny","prompt":"x","max_tokens":3}""", Encoding.UTF8, "application/json"));

    private static async Task<HttpStatusCode> CompleteAsync(HttpClient http)
    {
        using HttpResponseMessage response = await PostAsync(http);
        return response.StatusCode;
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> HealthAsync(HttpClient http)
    {
        using HttpResponseMessage response = await http.GetAsync("/health");
        return (response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    private async Task<DistributedRuntime> RuntimeAsync(IRequestPlane requests)
    {
        var discovery = new InMemoryDiscovery(_store);
        await discovery.StartAsync();
        return new DistributedRuntime(discovery, requests, _events, ownsPlanes: false, onDispose: null);
    }

    private T Own<T>(T disposable)
        where T : IAsyncDisposable
    {
        _cleanup.Add(disposable);
        return disposable;
    }
}

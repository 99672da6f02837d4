using System.Net;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Integration;

/// <summary>
/// DYN_SYSTEM_PORT and DYN_SYSTEM_HOST under `dynamo serve`, as under `dynamo worker`: the worker's /metrics,
/// /health and /live answer on that port (real processes, real nats-server and etcd, real HTTP).
/// </summary>
[Trait("Category", "Slow")]
public sealed class ServeSystemPortTests
{
    [Fact]
    public async Task Serve_DynSystemPort_TheWorkersStatusAnswersThere()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        int systemPort = LoopbackServers.FreePort();
        string config = Path.Combine(Path.GetTempPath(), $"mocker-{Guid.NewGuid():N}.yaml");
        string text = await File.ReadAllTextAsync(Path.Combine(RepoPaths.Root, "configs", "mocker.yaml"));
        await File.WriteAllTextAsync(config, text.Replace("workers: 8", "workers: 2", StringComparison.Ordinal));
        var env = new Dictionary<string, string>
        {
            ["NATS_SERVER"] = nats.Url,
            ["ETCD_ENDPOINTS"] = etcd.Endpoint,
            ["DYNAMO_HOME"] = RepoPaths.Root,
            ["DYN_SYSTEM_PORT"] = systemPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DYN_SYSTEM_HOST"] = "127.0.0.1",
        };
        await using DynamoProcess serve = DynamoProcess.Start(["serve", "graphs.agg:Frontend", "-f", config, "--service-name", "VllmWorker"], env);

        await serve.WaitForLineAsync("serve: started VllmWorker", 120);
        Assert.Contains($"serve: DYN_SYSTEM_PORT {systemPort}: the system port of VllmWorker (its first replica); the other workers of this process have none", serve.Output, StringComparison.Ordinal);
        Assert.Contains($"worker: /metrics, /health and /live on 127.0.0.1:{systemPort}", serve.Output, StringComparison.Ordinal);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{systemPort}/") };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("live")).StatusCode);
        Assert.Contains("dynamo_component_", await http.GetStringAsync("metrics"), StringComparison.Ordinal);
        File.Delete(config);
    }
}

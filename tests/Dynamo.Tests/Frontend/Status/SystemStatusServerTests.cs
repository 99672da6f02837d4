using System.Net;
using System.Text;
using Dynamo.Components.Workers;
using Dynamo.Engine.Serving;
using Dynamo.Frontend.Status;
using Dynamo.Runtime;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Frontend.Status;

public sealed class SystemStatusServerTests
{
    [Fact]
    public async Task Metrics_AfterARequest_ComponentFiguresFromTheEngine()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync();
        await using DistributedRuntime client = await cluster.ConnectAsync();
        var address = new EndpointAddress("dynamo", "backend", "generate");
        await using InferenceEngine engine = InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        await using EngineWorker worker = await EngineWorker.StartAsync(workerRuntime, engine, address);
        await using SystemStatusServer status = await SystemStatusServer.StartAsync(worker, "tiny", "127.0.0.1", 0);
        await using EndpointClient endpoint = await client.CreateClientAsync(address);
        await foreach (ReadOnlyMemory<byte> _ in endpoint.StreamAsync(Encoding.UTF8.GetBytes("{\"version\":1,\"token_ids\":[1,2,3],\"sampling\":{\"max_tokens\":4,\"ignore_eos\":true}}")))
        {
        }

        using var http = new HttpClient { BaseAddress = status.BaseAddress };
        string metrics = await http.GetStringAsync("metrics");
        string instance = EndpointAddress.FormatId(worker.InstanceId);
        Assert.Contains($"dynamo_component_requests_total{{model=\"tiny\",endpoint=\"dynamo.backend.generate\",instance=\"{instance}\"}} 1", metrics);
        Assert.Contains($"dynamo_component_kv_blocks_total{{model=\"tiny\",endpoint=\"dynamo.backend.generate\",instance=\"{instance}\"}} {engine.Stats.KvBlocksTotal}", metrics);
        foreach (string name in new[] { "inflight_requests", "running_requests", "waiting_requests", "kv_blocks_used", "kv_cache_usage_percent", "prefix_cache_queries_total", "prefix_cache_hits_total", "preemptions_total", "kv_events_published_total", "kv_events_dropped_total", "event_publish_failures_total" })
        {
            Assert.Contains($"dynamo_component_{name}{{", metrics);
        }

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("live")).StatusCode);
        Assert.Contains("dynamo.backend.generate", await http.GetStringAsync("health"));
    }
}

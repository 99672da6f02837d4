using System.Runtime.CompilerServices;
using System.Text;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Tests.Runtime;

public class DistributedRuntimeInProcessTests
{
    private static readonly EndpointAddress Address = new("dynamo", "backend", "generate");

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Echo(string tag, ReadOnlyMemory<byte> payload, int count, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        for (int i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return Encoding.UTF8.GetBytes($"{tag}:{Encoding.UTF8.GetString(payload.Span)}:{i}");
            await Task.Yield();
        }
    }

    private static async Task<List<string>> CollectAsync(IAsyncEnumerable<ReadOnlyMemory<byte>> stream)
    {
        var list = new List<string>();
        await foreach (ReadOnlyMemory<byte> item in stream)
        {
            list.Add(Encoding.UTF8.GetString(item.Span));
        }

        return list;
    }

    [Fact]
    public async Task ServeEndpoint_ClientInAnotherComponent_StreamsInOrderAndRegistersRecord()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime worker = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        Assert.NotEqual(worker.InstanceId, frontend.InstanceId);
        await using ServedEndpoint served = await worker.ServeEndpointAsync(Address, (ctx, p, ct) => Echo("w", p, 200, ct));
        Assert.Equal($"v1/instances/dynamo/backend/generate/{worker.InstanceId:x}", served.Key);
        await using EndpointClient client = await frontend.CreateClientAsync(Address);
        InstanceRecord record = Assert.Single(client.Instances);
        Assert.Equal(worker.InstanceId, record.InstanceId);
        Assert.Equal("inproc", record.Transport);
        Assert.Equal($"dyn.dynamo.backend.generate.{worker.InstanceId:x}", record.Subject);

        List<string> got = await CollectAsync(client.StreamAsync("hi"u8.ToArray()));
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"w:hi:{i}"), got);
    }

    [Fact]
    public async Task Client_TwoInstances_RoundRobinsAndFollowsLeaves()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime a = await cluster.ConnectAsync();
        await using DistributedRuntime b = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using EndpointClient client = await frontend.CreateClientAsync(Address);
        Assert.Empty(client.Instances);
        ServedEndpoint sa = await a.ServeEndpointAsync(Address, (ctx, p, ct) => Echo("a", p, 1, ct));
        await using ServedEndpoint sb = await b.ServeEndpointAsync(Address, (ctx, p, ct) => Echo("b", p, 1, ct));
        await client.WaitForInstancesAsync(2).WaitAsync(TimeSpan.FromSeconds(5));

        var tags = new List<string>();
        for (int i = 0; i < 10; i++)
        {
            tags.Add((await CollectAsync(client.StreamAsync("x"u8.ToArray())))[0][..1]);
        }

        Assert.Equal(5, tags.Count(t => t == "a"));
        Assert.Equal(5, tags.Count(t => t == "b"));

        await sa.DisposeAsync();
        await WaitUntilAsync(() => client.Instances.Count == 1);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal("b:x:0", Assert.Single(await CollectAsync(client.StreamAsync("x"u8.ToArray()))));
        }
    }

    [Fact]
    public async Task Client_LeaseRevokedMidStream_EndsWithInstanceLeftError()
    {
        await using var cluster = new InProcessCluster();
        DistributedRuntime worker = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        var started = new TaskCompletionSource();
        await worker.ServeEndpointAsync(Address, (ctx, p, ct) => Forever(started, ct));
        await using EndpointClient client = await frontend.CreateClientAsync(Address);

        Task<List<string>> call = CollectAsync(client.StreamAsync("x"u8.ToArray()));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(5));
        await worker.Discovery.RevokeAsync();
        RequestPlaneException e = await Assert.ThrowsAsync<RequestPlaneException>(() => call.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal("instance_left", e.Code);
        Assert.Contains("left discovery", e.Message);
        Assert.Empty(client.Instances);
        await worker.DisposeAsync();
    }

    [Fact]
    public async Task Client_InstanceListedButNotServing_IsMarkedDownAndRequestRetriedElsewhere()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime good = await cluster.ConnectAsync();
        await using DistributedRuntime ghost = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using ServedEndpoint served = await good.ServeEndpointAsync(Address, (ctx, p, ct) => Echo("good", p, 1, ct));

        // A record with nothing behind it: what a killed process leaves until its lease expires.
        ServedEndpoint ghostServed = await ghost.ServeEndpointAsync(Address, (ctx, p, ct) => Echo("ghost", p, 1, ct));
        await cluster.Requests.DisposeSubjectForTestAsync(Address.InstanceSubject(ghost.InstanceId));
        await using EndpointClient client = await frontend.CreateClientAsync(Address, EndpointClientOptions.Default with { DownInterval = TimeSpan.FromMinutes(1) });
        Assert.Equal(2, client.Instances.Count);

        for (int i = 0; i < 4; i++)
        {
            Assert.Equal("good:x:0", Assert.Single(await CollectAsync(client.StreamAsync("x"u8.ToArray()))));
        }

        Assert.Equal([good.InstanceId], client.AvailableInstances.Select(r => r.InstanceId));
        RequestPlaneException pinned = await Assert.ThrowsAsync<RequestPlaneException>(() => CollectAsync(client.StreamAsync("x"u8.ToArray(), ghost.InstanceId)));
        Assert.Equal(RequestErrorKind.NoResponders, pinned.Kind);
        await ghostServed.DisposeAsync();
    }

    [Fact]
    public async Task Client_InstanceMarkedDown_ReadmittedAfterTheIntervalWhileStillListed()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime worker = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using ServedEndpoint served = await worker.ServeEndpointAsync(Address, (ctx, p, ct) => Echo("w", p, 1, ct));
        await using EndpointClient client = await frontend.CreateClientAsync(Address, EndpointClientOptions.Default with { DownInterval = TimeSpan.FromMilliseconds(300) });

        client.ReportFailure(worker.InstanceId);
        Assert.Empty(client.AvailableInstances);
        RequestPlaneException e = await Assert.ThrowsAsync<RequestPlaneException>(() => CollectAsync(client.StreamAsync("x"u8.ToArray())));
        Assert.Equal(RequestErrorKind.NoResponders, e.Kind);

        await WaitUntilAsync(() => client.AvailableInstances.Count == 1);
        Assert.Equal("w:x:0", Assert.Single(await CollectAsync(client.StreamAsync("x"u8.ToArray()))));
    }

    [Fact]
    public async Task Client_NoInstances_FailsWithClearError()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await using EndpointClient client = await frontend.CreateClientAsync(Address);
        RequestPlaneException e = await Assert.ThrowsAsync<RequestPlaneException>(() => CollectAsync(client.StreamAsync("x"u8.ToArray())));
        Assert.Equal(RequestErrorKind.NoResponders, e.Kind);
        Assert.Contains("dynamo.backend.generate", e.Message);
    }

    [Fact]
    public async Task Blobs_RoundTripLargeContentInChunks()
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime a = await cluster.ConnectAsync();
        await using DistributedRuntime b = await cluster.ConnectAsync();
        var random = new Random(7);
        byte[] content = new byte[3 * 1024 * 1024 + 17];
        random.NextBytes(content);
        string hash = await a.Blobs.PutAsync(content);
        Assert.Equal(BlobStore.HashOf(content), hash);
        Assert.True((await a.Discovery.GetPrefixAsync($"{BlobStore.Root}{hash}/")).Count > 1);
        Assert.Equal(content, await b.Blobs.GetAsync(hash));
        Assert.Null(await b.Blobs.GetAsync(BlobStore.HashOf("absent"u8)));
        Assert.Equal(hash, await b.Blobs.PutAsync(content));
    }

    [Fact]
    public async Task ModelCard_PublishedUnderLeaseAndGoneOnDispose()
    {
        await using var cluster = new InProcessCluster();
        DistributedRuntime worker = await cluster.ConnectAsync();
        await using DistributedRuntime frontend = await cluster.ConnectAsync();
        await worker.PublishModelCardAsync(Address, "{\"name\":\"m\"}"u8.ToArray());
        var entry = Assert.Single(await frontend.Discovery.GetPrefixAsync(Address.ModelCardsPrefix));
        Assert.Equal($"v1/mdc/dynamo/backend/generate/{worker.InstanceId:x}", entry.Key);
        await worker.DisposeAsync();
        Assert.Empty(await frontend.Discovery.GetPrefixAsync(Address.ModelCardsPrefix));
    }

    [Theory]
    [InlineData("dyn amo")]
    [InlineData("a.b")]
    [InlineData("")]
    [InlineData("x*")]
    public void EndpointAddress_BadName_Throws(string name)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => new EndpointAddress(name, "c", "e"));
        Assert.Contains("namespace name", e.Message);
    }

    [Fact]
    public void EndpointAddress_ParseAndKeys()
    {
        EndpointAddress a = EndpointAddress.Parse("dynamo.prefill.generate");
        Assert.Equal(a, EndpointAddress.Parse("dynamo/prefill/generate"));
        Assert.Equal("v1/mdc/dynamo/prefill/generate/1f", a.ModelCardKey(31));
        Assert.Equal(31, EndpointAddress.ParseIdFromKey(a.InstanceKey(31)));
        Assert.Equal("dyn.dynamo.prefill.events.kv_events", a.EventSubject("kv_events"));
        Assert.Throws<ArgumentException>(() => EndpointAddress.Parse("a.b"));
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Forever(TaskCompletionSource started, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        yield return "first"u8.ToArray();
        started.TrySetResult();
        await Task.Delay(Timeout.Infinite, cancellationToken);
    }

    /// <summary>Waits for <paramref name="condition"/> (also used by the integration tests).</summary>
    internal static Task WaitUntilAsync(Func<bool> condition, double seconds = 5) =>
        Eventually.WaitUntilAsync(condition, "the condition", TimeSpan.FromSeconds(seconds));
}

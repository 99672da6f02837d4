using System.Text.Json;
using Dynamo.Components.Processing;
using Dynamo.Runtime;
using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// Every <see cref="FrontendServerTests"/> test again with a Processor component in the path (Frontend ->
/// Processor -> Worker, as the guides' graphs link them): the frontend relays each request's body and
/// the processor preprocesses, routes and postprocesses; answers, errors, cancellation and metrics must
/// be the same. Plus what only the relay has.
/// </summary>
public sealed class FrontendThroughProcessorTests : FrontendServerTests
{
    private protected override bool ThroughProcessor => true;

    [Fact]
    public async Task Processor_HandlesEveryRequest_TheFrontendRelays()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = ChatPrompt(("user", "Hi there"));

        var (status, body) = await h.PostJsonAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"Hi there"}]}""");
        Sse sse = await h.PostSseAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"Hi there"}],"stream":true}""");

        Assert.Equal(200, status);
        Assert.Equal(Detokenize(prompt, prompt), body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(Detokenize(prompt, prompt), string.Concat(sse.Events().Select(e => e.GetProperty("choices").EnumerateArray()
            .Select(c => c.GetProperty("delta").TryGetProperty("content", out JsonElement t) ? t.GetString() : "").FirstOrDefault())));
        Assert.Equal(2, h.Processor!.Requests);
    }

    [Fact]
    public async Task Processor_Gone_TheFrontendPreprocessesItself()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        await h.Processor!.DisposeAsync();

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"abc","max_tokens":3}""");

        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(0, h.Processor.Requests);
    }

    [Fact]
    public async Task Processor_StillListedButGone_TheFrontendPreprocessesItself()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        await h.Processor!.DisposeAsync();

        // A processor that died without leaving discovery (or whose leaving the frontend has not seen yet).
        EndpointAddress address = ProcessorServer.AddressFor("dynamo");
        var record = new InstanceRecord
        {
            Namespace = address.Namespace,
            Component = address.Component,
            Endpoint = address.Endpoint,
            InstanceId = 0x600d,
            Transport = "nats",
            Subject = address.InstanceSubject(0x600d),
        };
        await h.Runtime.Discovery.PutAsync(address.InstanceKey(record.InstanceId),
            JsonSerializer.SerializeToUtf8Bytes(record, RuntimeJsonContext.Default.InstanceRecord), DiscoveryPutOptions.LeasedKey);
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            while (await h.Server.Registry.ProcessorsAsync() is null)
            {
                await Task.Delay(10, timeout.Token);
            }
        }

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"abc","max_tokens":3}""");

        Assert.Equal(200, status);
        Assert.Equal(3, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Processor_TwoInstances_ShareTheRequests()
    {
        await using FrontendHarness h = await StartAsync();
        await using ProcessorServer second = await ProcessorServer.StartAsync(await h.Cluster.ConnectAsync(), ProcessorOptions.Default with
        {
            TokenizerCacheDirectory = FrontendHarness.TokenizerCache,
        });
        await h.AddWorkerAsync(FrontendHarness.Echo());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await second.WaitForModelAsync(FrontendHarness.Model, timeout.Token);
        EndpointClient processors = await h.Runtime.CreateClientAsync(ProcessorServer.AddressFor("dynamo"));
        while (processors.Instances.Count < 2)
        {
            await Task.Delay(10, timeout.Token);
        }

        for (int i = 0; i < 8; i++)
        {
            var (status, _) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"abc","max_tokens":2}""");
            Assert.Equal(200, status);
        }

        Assert.Equal(8, h.Processor!.Requests + second.Requests);
        Assert.True(h.Processor.Requests > 0 && second.Requests > 0, $"{h.Processor.Requests} and {second.Requests}");
        await processors.DisposeAsync();
    }

    [Fact]
    public async Task Processor_MalformedOrUnknownVersion_ErrorFrameAndKeepsServing()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        await using EndpointClient client = await h.Runtime.CreateClientAsync(ProcessorServer.AddressFor("dynamo"));

        RequestPlaneException malformed = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync("{not json"u8.ToArray()))
            {
            }
        });
        RequestPlaneException version = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync("""{"v":9,"kind":"chat","request_id":"x","body":{}}"""u8.ToArray()))
            {
            }
        });
        var (status, _) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"abc","max_tokens":2}""");

        Assert.Equal("invalid_request", malformed.Code);
        Assert.Equal("unsupported_version", version.Code);
        Assert.Equal(200, status);
    }

    [Fact]
    public async Task Processor_ModelItDoesNotServe_404FromTheProcessor()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        ProcessorFrame error = Assert.Single(await ProcessorFramesAsync(h, """{"v":1,"kind":"completions","request_id":"cmpl-x","body":{"model":"nope","prompt":"a"}}"""));
        Assert.Equal(ProcessorFrame.ErrorType, error.Type);
        Assert.Equal(404, error.Status);
        Assert.Equal("model_not_found", error.Error!.Code);
    }

    [Fact]
    public async Task Processor_BodyWithALoneSurrogate_400FrameNamingTheField()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        ProcessorFrame error = Assert.Single(await ProcessorFramesAsync(h, """{"v":1,"kind":"completions","request_id":"cmpl-x","body":{"model":"tiny","prompt":"a\ud800"}}"""));
        Assert.Equal(400, error.Status);
        Assert.Equal(("invalid_encoding", "prompt"), (error.Error!.Code, error.Error.Param));
    }

    /// <summary>Sends one processor request straight to the Processor component; its answer's frames.</summary>
    private static async Task<List<ProcessorFrame>> ProcessorFramesAsync(FrontendHarness h, string request)
    {
        await using EndpointClient client = await h.Runtime.CreateClientAsync(ProcessorServer.AddressFor("dynamo"));
        var frames = new List<ProcessorFrame>();
        await foreach (ReadOnlyMemory<byte> frame in client.StreamAsync(System.Text.Encoding.UTF8.GetBytes(request)))
        {
            frames.Add(JsonSerializer.Deserialize(frame.Span, ProcessorJsonContext.Default.ProcessorFrame)!);
        }

        return frames;
    }
}

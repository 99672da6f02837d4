using System.Text;
using System.Text.Json;
using Dynamo.Components.KvTransfer;
using Dynamo.Components.ModelCards;
using Dynamo.Components.Processing;
using Dynamo.Components.Registry;
using Dynamo.Components.Workers;
using Dynamo.Engine.Models.Synth;
using Dynamo.Frontend;
using Dynamo.Llm.ChatTemplates;
using Dynamo.Llm.Engines;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.ModelFiles;
using Dynamo.Mocker;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Tests.Frontend;

/// <summary>An in-process cluster with a frontend on 127.0.0.1:0 and workers added on demand, each serving an engine and publishing the tiny model's card.</summary>
internal sealed class FrontendHarness : IAsyncDisposable
{
    public const string Model = "tiny";

    /// <summary>The tiny synthesized model with a ChatML chat template.</summary>
    internal static readonly Lazy<string> TinyChatModel = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-frontend-tests", Guid.NewGuid().ToString("N"), "tiny-chat.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path, Type = GgmlType.F32, ChatTemplate = BuiltinChatTemplates.ChatMl });
        return path;
    });

    internal static readonly Lazy<TokenizerBundle> Bundle = new(() => TokenizerBundle.FromGguf(GgufFile.Read(TinyChatModel.Value)));

    private readonly List<TestWorker> _workers = [];
    private bool _serverDisposed;

    private FrontendHarness(InProcessCluster cluster, DistributedRuntime runtime, FrontendServer server, ProcessorServer? processor)
    {
        Cluster = cluster;
        Runtime = runtime;
        Server = server;
        Processor = processor;
        Http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public InProcessCluster Cluster { get; }

    public DistributedRuntime Runtime { get; }

    public FrontendServer Server { get; }

    /// <summary>The Processor component the frontend relays to, when started with one.</summary>
    public ProcessorServer? Processor { get; }

    public HttpClient Http { get; }

    public static EchoEngine Echo(TimeSpan? delay = null) =>
        new(EchoEngineOptions.Default with { TokenDelay = delay ?? TimeSpan.Zero, ContextLength = 256, VocabSize = 512 });

    /// <summary>Where the tests' frontends and processors cache tokenizer files.</summary>
    public static string TokenizerCache { get; } = Path.Combine(Path.GetTempPath(), "dynamo-frontend-tests");

    /// <summary>
    /// A cluster and a frontend; with <paramref name="processor"/>, a Processor component too (its own
    /// runtime, started first, with the same routing options): the frontend then relays every request to it.
    /// </summary>
    public static async Task<FrontendHarness> StartAsync(FrontendOptions? options = null, ILoggerFactory? loggers = null, bool processor = false)
    {
        var cluster = new InProcessCluster();
        FrontendOptions effective = (options ?? FrontendOptions.Default) with
        {
            Host = "127.0.0.1",
            HttpPort = 0,
        };
        effective = effective with { Processing = effective.Processing with { TokenizerCacheDirectory = TokenizerCache } };
        ProcessorServer? processorServer = processor
            ? await ProcessorServer.StartAsync(await cluster.ConnectAsync(), effective.Processing, loggers ?? NullLoggerFactory.Instance)
            : null;
        DistributedRuntime runtime = await cluster.ConnectAsync();
        FrontendServer server = await FrontendServer.StartAsync(runtime, effective, loggers ?? NullLoggerFactory.Instance);
        return new FrontendHarness(cluster, runtime, server, processorServer);
    }

    /// <summary>Starts a worker serving <paramref name="engine"/> and publishing a card for <paramref name="model"/>; waits until the frontend serves it.</summary>
    public Task<TestWorker> AddWorkerAsync(IEngine engine, string model = Model, string component = "backend", int contextLength = 256, bool serve = true, string role = "aggregated", EngineWorkerOptions? options = null) =>
        AddWorkerAsync([engine], model, component, contextLength, serve, role, options);

    /// <summary>As <see cref="AddWorkerAsync(IEngine, string, string, int, bool, string, EngineWorkerOptions?)"/>, one worker serving <paramref name="ranks"/> as its data-parallel ranks (the caller disposes all but the first).</summary>
    public async Task<TestWorker> AddWorkerAsync(IReadOnlyList<IEngine> ranks, string model = Model, string component = "backend", int contextLength = 256, bool serve = true, string role = "aggregated", EngineWorkerOptions? options = null)
    {
        IEngine engine = ranks[0];
        DistributedRuntime runtime = await Cluster.ConnectAsync();
        var address = new EndpointAddress("dynamo", component, "generate");
        EngineWorker? worker = serve ? await EngineWorker.StartAsync(runtime, ranks, address, options ?? EngineWorkerOptions.Default) : null;
        await ModelCardStore.PublishAsync(runtime, address, new ModelCardSource(model, "gguf", TinyChatModel.Value, contextLength, 16, 512), role);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await Server.WaitForModelAsync(model, timeout.Token);
        if (Processor is not null)
        {
            await Processor.WaitForModelAsync(model, timeout.Token);
        }

        var w = new TestWorker(runtime, worker, engine, options?.KvTransfer);
        _workers.Add(w);
        return w;
    }

    /// <summary>Waits until whichever process routes (the frontend, and the processor when there is one) has <paramref name="count"/> candidates for <paramref name="model"/>.</summary>
    public async Task WaitForCandidatesAsync(int count, string model = Model)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        foreach (ModelRegistry registry in Processor is null ? [Server.Registry] : new[] { Server.Registry, Processor.Registry })
        {
            while ((registry.TargetFor(model, new HashSet<long>())?.Candidates.Count ?? 0) < count)
            {
                await Task.Delay(10, timeout.Token);
            }
        }
    }

    /// <summary>The metrics of the process that routes: the Processor component's when there is one, else the frontend's /metrics.</summary>
    public async Task<string> RoutingMetricsAsync()
    {
        if (Processor is null)
        {
            return await Http.GetStringAsync("metrics");
        }

        using var buffer = new MemoryStream();
        await new Dynamo.Frontend.Observability.ProcessorMetrics(Processor).ExportAsync(buffer);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    public Task<HttpResponseMessage> PostAsync(string path, string json, CancellationToken cancellationToken = default) =>
        Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"), cancellationToken);

    public async Task<(int Status, JsonElement Body)> PostJsonAsync(string path, string json)
    {
        using HttpResponseMessage response = await PostAsync(path, json);
        string text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>Posts and reads the whole SSE stream: data payloads (without "data: ") and comment lines.</summary>
    public async Task<Sse> PostSseAsync(string path, string json, CancellationToken cancellationToken = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        using HttpResponseMessage response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        return await Sse.ReadAsync(response, cancellationToken);
    }

    public async ValueTask DisposeServerAsync()
    {
        if (!_serverDisposed)
        {
            _serverDisposed = true;
            await Server.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await DisposeServerAsync();
        if (Processor is not null)
        {
            await Processor.DisposeAsync();
        }

        foreach (TestWorker w in _workers)
        {
            await w.DisposeAsync();
        }

        await Runtime.DisposeAsync();
        await Cluster.DisposeAsync();
    }
}

/// <summary>A worker of the harness: its runtime (dispose it to make the worker vanish), the served endpoint and the engine.</summary>
internal sealed class TestWorker(DistributedRuntime runtime, EngineWorker? worker, IEngine engine, KvTransferServer? transfer = null) : IAsyncDisposable
{
    private bool _disposed;

    public DistributedRuntime Runtime { get; } = runtime;

    public IEngine Engine { get; } = engine;

    /// <summary>The served endpoint's worker (null when not serving).</summary>
    public EngineWorker? Worker { get; } = worker;

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (Worker is not null)
        {
            await Worker.DisposeAsync();
        }

        await Runtime.DisposeAsync();
        await Engine.DisposeAsync();
        if (transfer is not null)
        {
            await transfer.DisposeAsync();
        }
    }
}

/// <summary>A parsed SSE response.</summary>
internal sealed record Sse(int Status, string ContentType, List<string> Data, List<string> Comments)
{
    public static async Task<Sse> ReadAsync(HttpResponseMessage response, CancellationToken cancellationToken = default)
    {
        var data = new List<string>();
        var comments = new List<string>();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        string? pendingBlank = null;
        while (await reader.ReadLineAsync(cancellationToken) is string line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                data.Add(line["data: ".Length..]);
            }
            else if (line.StartsWith(':'))
            {
                comments.Add(line);
            }
            else if (line.Length != 0)
            {
                throw new InvalidDataException($"unexpected SSE line '{line}'");
            }

            pendingBlank = line;
        }

        _ = pendingBlank;
        return new Sse((int)response.StatusCode, response.Content.Headers.ContentType?.MediaType ?? "", data, comments);
    }

    /// <summary>The JSON events before [DONE] (asserting [DONE] is last and appears once).</summary>
    public List<JsonElement> Events()
    {
        Assert.True(Data.Count > 0, $"HTTP {Status} {ContentType} with no SSE data");
        Assert.Equal("[DONE]", Data[^1]);
        Assert.Single(Data, d => d == "[DONE]");
        return [.. Data.Take(Data.Count - 1).Select(d => JsonDocument.Parse(d).RootElement.Clone())];
    }
}

using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Dynamo.Components.Processing;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Mocker;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Frontend;

namespace Dynamo.Tests.Components.Processing;

/// <summary>
/// Request migration through the frontend, in one process: the worker serving a stream stops after some tokens
/// (its served endpoint disposed: the stream ends with <c>server_stopped</c>), and the frontend continues the
/// request on another worker from the tokens already streamed. The client's stream has no gap, no repeated
/// token and one role chunk; greedy and seeded output equal the output of a run without a migration.
/// </summary>
public sealed class MigrationTests
{
    private const string Chat = "v1/chat/completions";
    internal static readonly EngineOptions Roomy = EngineOptions.Default with { KvCacheMemory = 64L << 20 };

    [Theory]
    [InlineData("\"temperature\":0")]
    [InlineData("\"temperature\":1,\"seed\":42")]
    [InlineData("\"temperature\":0.8,\"top_p\":0.9,\"seed\":7,\"frequency_penalty\":0.5,\"presence_penalty\":0.3")]
    public async Task BuiltInEngine_WorkerStopsMidStream_ClientGetsTheUnmigratedOutput(string sampling)
    {
        string model = FrontendHarness.TinyChatModel.Value;
        string body = ChatBody(sampling, maxTokens: 40);
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        InferenceEngine first = InferenceEngineTests.Create(model, Roomy);
        TestWorker a = await h.AddWorkerAsync(first, contextLength: 2048);
        Streamed reference = Streamed.Parse(await h.PostSseAsync(Chat, body));
        Assert.Equal(40, reference.CompletionTokens);

        // The first worker holds after its 12th step; a second one joins; the first is stopped mid-stream.
        long from = StepsBefore(first);
        ManualResetEventSlim gate = HoldFrom(from + 12, hook => first.Core.BeforeStep = hook);
        (HttpResponseMessage response, StreamReader reader, List<string> data) = await OpenStreamAsync(h, body, chunks: 5);
        using HttpResponseMessage held = response;
        using StreamReader heldReader = reader;
        TestWorker b = await h.AddWorkerAsync(InferenceEngineTests.Create(model, Roomy), contextLength: 2048);
        await h.WaitForCandidatesAsync(2);
        Task stopping = a.DisposeAsync().AsTask();
        await ReadDataAsync(reader, data, until: () => data.Count > 0 && data[^1] == "[DONE]");
        gate.Set();
        await stopping;

        Streamed migrated = Streamed.Parse(new Sse(200, "text/event-stream", data, []));
        Assert.Equal(reference.Text, migrated.Text);
        Assert.Equal(1, migrated.RoleChunks);
        Assert.Equal(reference.PromptTokens, migrated.PromptTokens);
        Assert.Equal(40, migrated.CompletionTokens);
        Assert.Equal("length", migrated.FinishReason);
        // Stopping a worker here ends its served endpoint (server_stopped), takes it out of discovery (instance_left)
        // and cancels its running requests (an error frame saying so): whichever the frontend sees first names the
        // migration (a fresh-clone run once saw the cancellation first).
        (string Model, string Reason, long Count) only = Assert.Single(h.Server.Registry.Migration.Migrations());
        Assert.Equal(FrontendHarness.Model, only.Model);
        Assert.Contains(only.Reason, new[] { "worker_stopped", "worker_unreachable", "worker_cancelled" });
        Assert.Equal(1, only.Count);
        Assert.Equal(1, b.Worker!.RequestsTotal);
        string metrics = await h.Http.GetStringAsync("/metrics");
        Assert.Contains($"dynamo_frontend_migrations_total{{model=\"tiny\",reason=\"{only.Reason}\"}} 1", metrics);
    }

    [Fact]
    public async Task Mocker_OnlyWorkerStopsMidStream_TheStreamWaitsForTheNextWorkerAndCompletes()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        MockerEngine first = Mocker();
        TestWorker a = await h.AddWorkerAsync(first);
        string body = ChatBody("\"temperature\":0", maxTokens: 30);
        Streamed reference = Streamed.Parse(await h.PostSseAsync(Chat, body));

        long from = StepsBefore(first);
        ManualResetEventSlim gate = HoldFrom(from + 10, hook => first.Core.BeforeStep = hook);
        (HttpResponseMessage response, StreamReader reader, List<string> data) = await OpenStreamAsync(h, body, chunks: 3);
        using HttpResponseMessage held = response;
        using StreamReader heldReader = reader;
        Task stopping = a.DisposeAsync().AsTask();

        // No worker is left: the stream waits (up to --migration-wait) and a restarted worker takes it.
        await WaitUntilAsync(() => h.Server.Registry.TargetFor(FrontendHarness.Model, new HashSet<long>()) is null);
        gate.Set();
        await stopping;
        await h.AddWorkerAsync(Mocker());
        await ReadDataAsync(reader, data, until: () => data.Count > 0 && data[^1] == "[DONE]");

        Streamed migrated = Streamed.Parse(new Sse(200, "text/event-stream", data, []));
        Assert.Equal(reference.Text, migrated.Text);
        Assert.Equal(30, migrated.CompletionTokens);
        Assert.Equal(1, migrated.RoleChunks);
        Assert.Equal(1, h.Server.Registry.Migration.Total);
    }

    [Fact]
    public async Task MigrationLimitZero_WorkerStopsMidStream_TheClientGetsTheErrorAndItIsCounted()
    {
        FrontendOptions options = FrontendOptions.Default with { Processing = FrontendOptions.Default.Processing with { MigrationLimit = 0 } };
        await using FrontendHarness h = await FrontendHarness.StartAsync(options);
        MockerEngine first = Mocker();
        TestWorker a = await h.AddWorkerAsync(first);
        ManualResetEventSlim gate = HoldFrom(5, hook => first.Core.BeforeStep = hook);

        (HttpResponseMessage response, StreamReader reader, List<string> data) = await OpenStreamAsync(h, ChatBody("\"temperature\":0", maxTokens: 30), chunks: 1);
        using HttpResponseMessage held = response;
        using StreamReader heldReader = reader;
        await h.AddWorkerAsync(Mocker());
        await h.WaitForCandidatesAsync(2);
        await StopAndReadToEndAsync(reader, data, stop: () => a.DisposeAsync().AsTask(), release: gate.Set);

        AssertFailedUnmigrated(h, data, "worker_unreachable");
    }

    [Fact]
    public async Task Drain_TheDrainingWorkersStreamFinishesThereAndNewRequestsGoToTheOther()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync();
        MockerEngine first = Mocker();
        TestWorker a = await h.AddWorkerAsync(first);
        ManualResetEventSlim gate = HoldFrom(5, hook => first.Core.BeforeStep = hook);

        (HttpResponseMessage response, StreamReader reader, List<string> data) = await OpenStreamAsync(h, ChatBody("\"temperature\":0", maxTokens: 30), chunks: 1);
        using HttpResponseMessage held = response;
        using StreamReader heldReader = reader;
        TestWorker b = await h.AddWorkerAsync(Mocker());
        await h.WaitForCandidatesAsync(2);

        Task<int> draining = a.Worker!.DrainAsync(TimeSpan.FromSeconds(60));
        await WaitUntilAsync(() => h.Server.Registry.TargetFor(FrontendHarness.Model, new HashSet<long>())?.Candidates is [long only] && only == b.Worker!.InstanceId);
        Assert.Equal(200, (await h.PostJsonAsync(Chat, ChatBody("\"temperature\":0", maxTokens: 4).Replace("\"stream\":true", "\"stream\":false", StringComparison.Ordinal))).Status);
        Assert.Equal(1, b.Worker!.RequestsTotal);
        Assert.False(draining.IsCompleted);

        gate.Set();
        await ReadDataAsync(reader, data, until: () => data.Count > 0 && data[^1] == "[DONE]");
        Assert.Equal(0, await draining);
        Assert.Equal(30, Streamed.Parse(new Sse(200, "text/event-stream", data, [])).CompletionTokens);
        Assert.Equal(0, h.Server.Registry.Migration.Total);
        Assert.Equal(1, a.Worker.RequestsTotal);
    }

    [Fact]
    public async Task Drain_ProcessorFinishesItsStreamWhileTheFrontendPreprocessesNewRequestsItself()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(processor: true);
        MockerEngine engine = Mocker();
        await h.AddWorkerAsync(engine);
        ManualResetEventSlim gate = HoldFrom(5, hook => engine.Core.BeforeStep = hook);

        (HttpResponseMessage response, StreamReader reader, List<string> data) = await OpenStreamAsync(h, ChatBody("\"temperature\":0", maxTokens: 30), chunks: 1);
        using HttpResponseMessage held = response;
        using StreamReader heldReader = reader;
        Assert.Equal(1, h.Processor!.InflightRequests);

        Task<long> draining = h.Processor.DrainAsync(TimeSpan.FromSeconds(60));
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            while (await h.Server.Registry.ProcessorsAsync() is not null)
            {
                await Task.Delay(10, timeout.Token);
            }
        }
        gate.Set();
        Assert.Equal(200, (await h.PostJsonAsync(Chat, ChatBody("\"temperature\":0", maxTokens: 4).Replace("\"stream\":true", "\"stream\":false", StringComparison.Ordinal))).Status);
        Assert.Equal(1, h.Processor.Requests);
        await ReadDataAsync(reader, data, until: () => data.Count > 0 && data[^1] == "[DONE]");
        Assert.Equal(0, await draining);
        Assert.Equal(30, Streamed.Parse(new Sse(200, "text/event-stream", data, [])).CompletionTokens);
    }

    [Fact]
    public void Resume_AppendsTheOutputAndMarksIt_AndNullWhenMaxTokensIsUsedUp()
    {
        var original = new GenerateRequest { Version = 1, RequestId = "r", TokenIds = [5, 6, 7], Sampling = new GenerateSampling { MaxTokens = 10, Seed = 3 } };

        GenerateRequest resumed = GenerationPipeline.Resume(original, [8, 9])!;

        Assert.Equal([5, 6, 7, 8, 9], resumed.TokenIds);
        Assert.Equal(2, resumed.ResumedOutputTokens);
        Assert.Equal(8, resumed.Sampling!.MaxTokens);
        Assert.Equal(3UL, resumed.Sampling.Seed);
        Assert.Same(original, GenerationPipeline.Resume(original, []));
        Assert.Null(GenerationPipeline.Resume(original, [.. Enumerable.Range(0, 10)]));
    }

    [Theory]
    [InlineData(RequestErrorKind.Unreachable, "server_stopped", "worker_stopped")]
    [InlineData(RequestErrorKind.Unreachable, "unreachable", "worker_unreachable")]
    [InlineData(RequestErrorKind.Unreachable, "instance_left", "worker_unreachable")]
    [InlineData(RequestErrorKind.NoResponders, "no_responders", "worker_unreachable")]
    [InlineData(RequestErrorKind.Interrupted, "frame_gap", "transport")]
    [InlineData(RequestErrorKind.Unavailable, "request_plane_unavailable", null)]
    [InlineData(RequestErrorKind.Transport, "connection_closed", "transport")]
    [InlineData(RequestErrorKind.Transport, "ack_timeout", null)]
    [InlineData(RequestErrorKind.Transport, "payload_too_large", null)]
    [InlineData(RequestErrorKind.Remote, "internal", "worker_error")]
    [InlineData(RequestErrorKind.Remote, "invalid_request", null)]
    [InlineData(RequestErrorKind.DeadlineExceeded, "deadline_exceeded", null)]
    public void MigrationReason_ByFailure(RequestErrorKind kind, string code, string? reason) =>
        Assert.Equal(reason, GenerationPipeline.MigrationReason(new RequestPlaneException(kind, code, "x")));

    /// <summary>An engine hook that holds every step from <paramref name="step"/> on until the returned gate is set.</summary>
    internal static ManualResetEventSlim HoldFrom(long step, Action<Action<long>> setBeforeStep)
    {
        var gate = new ManualResetEventSlim();
        setBeforeStep(n =>
        {
            if (n >= step)
            {
                gate.Wait();
            }
        });
        return gate;
    }

    /// <summary>
    /// Stops what serves a held stream (<paramref name="stop"/>: a worker or a processor), reads the stream to its
    /// end, then lets the held engine go on (<paramref name="release"/>) and waits for the stop to finish.
    /// </summary>
    internal static async Task StopAndReadToEndAsync(StreamReader reader, List<string> data, Func<Task> stop, Action release)
    {
        Task stopping = stop();
        await ReadDataAsync(reader, data, until: () => data.Count > 0 && data[^1] == "[DONE]");
        release();
        await stopping;
    }

    /// <summary>Asserts the stream ended with an error event of <paramref name="code"/>, counted as a stream that could not migrate.</summary>
    internal static void AssertFailedUnmigrated(FrontendHarness h, List<string> data, string code)
    {
        Assert.Contains(data, d => d.Contains("\"error\"", StringComparison.Ordinal) && d.Contains(code, StringComparison.Ordinal));
        Assert.Equal(0, h.Server.Registry.Migration.Total);
        Assert.Equal([(FrontendHarness.Model, 1L)], h.Server.Registry.Migration.ExhaustedStreams());
    }

    /// <summary>Starts a streaming request and reads it until <paramref name="chunks"/> content chunks came.</summary>
    internal static async Task<(HttpResponseMessage Response, StreamReader Reader, List<string> Data)> OpenStreamAsync(FrontendHarness h, string body, int chunks)
    {
        HttpResponseMessage response = await SendStreamingAsync(h, body);
        var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var data = new List<string>();
        await ReadDataAsync(reader, data, until: () => ContentChunks(data) >= chunks);
        return (response, reader, data);
    }

    private static MockerEngine Mocker() =>
        new(MockerOptions.Default with { VocabSize = 512, ContextLength = 256, SpeedupRatio = 1000 });

    internal static long StepsBefore(IEngine engine) => engine.Stats.Steps;

    private static string ChatBody(string sampling, int maxTokens) =>
        $$"""{"model":"{{FrontendHarness.Model}}","messages":[{"role":"user","content":"tell me a long story about the sea"}],"max_tokens":{{maxTokens}},"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true},{{sampling}}}""";

    private static async Task<HttpResponseMessage> SendStreamingAsync(FrontendHarness h, string body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, Chat) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        HttpResponseMessage response = await h.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        return response;
    }

    /// <summary>Reads SSE data lines into <paramref name="data"/> until <paramref name="until"/> holds (or the stream ends).</summary>
    internal static async Task ReadDataAsync(StreamReader reader, List<string> data, Func<bool> until)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!until() && await reader.ReadLineAsync(timeout.Token) is string line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                data.Add(line["data: ".Length..]);
            }
        }

        Assert.True(until(), $"the stream ended early: {string.Join(" | ", data.TakeLast(3))}");
    }

    private static int ContentChunks(List<string> data) => data.Count(d => d.Contains("\"content\":\"", StringComparison.Ordinal) && !d.Contains("\"content\":\"\"", StringComparison.Ordinal));

    internal static async Task WaitUntilAsync(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (!condition())
        {
            await Task.Delay(10, timeout.Token);
        }
    }

    /// <summary>A chat stream read back: its text, role chunks, usage and finish reason (no error event allowed).</summary>
    private sealed record Streamed(string Text, int RoleChunks, int PromptTokens, int CompletionTokens, string? FinishReason)
    {
        public static Streamed Parse(Sse sse)
        {
            var text = new StringBuilder();
            int roles = 0;
            int prompt = 0;
            int completion = 0;
            string? finish = null;
            foreach (JsonElement e in sse.Events())
            {
                Assert.False(e.TryGetProperty("error", out _), e.GetRawText());
                if (e.TryGetProperty("usage", out JsonElement usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    prompt = usage.GetProperty("prompt_tokens").GetInt32();
                    completion = usage.GetProperty("completion_tokens").GetInt32();
                }

                foreach (JsonElement choice in e.GetProperty("choices").EnumerateArray())
                {
                    JsonElement delta = choice.GetProperty("delta");
                    if (delta.TryGetProperty("role", out _))
                    {
                        roles++;
                    }

                    if (delta.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String)
                    {
                        text.Append(content.GetString());
                    }

                    if (choice.TryGetProperty("finish_reason", out JsonElement f) && f.ValueKind == JsonValueKind.String)
                    {
                        Assert.Null(finish);
                        finish = f.GetString();
                    }
                }
            }

            return new Streamed(text.ToString(), roles, prompt, completion, finish);
        }
    }
}

using System.Text.Json;
using Dynamo.Components.Processing;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Frontend;
using Xunit.Abstractions;

namespace Dynamo.Tests.Components.Processing;

/// <summary>
/// Processor migration, in one process: the Processor component relaying a stream stops after some deltas (its
/// served endpoint disposed: the stream ends with <c>server_stopped</c>), and the frontend continues the request
/// on the other processor, or on its own pipeline when none is left, from the token ids the deltas carried. The
/// client's stream equals the stream of a run without a migration, choice by choice (greedy and seeded, n = 2,
/// a stop string): no gap, no repeated character, one role chunk per choice, usage whole.
/// </summary>
public sealed class ProcessorMigrationTests(ITestOutputHelper output)
{
    private const string Chat = "v1/chat/completions";
    private const int MaxTokens = 40;

    [Theory]
    [InlineData("\"temperature\":0", 1, false)]
    [InlineData("\"temperature\":1,\"seed\":42", 1, false)]
    [InlineData("\"temperature\":0.8,\"top_p\":0.9,\"seed\":7,\"frequency_penalty\":0.5", 2, false)]
    [InlineData("\"temperature\":1,\"seed\":5", 1, true)]
    [InlineData("\"temperature\":1,\"seed\":3", 2, true)]
    public async Task BuiltInEngine_ProcessorStopsMidStream_TheOtherProcessorContinuesWithTheUnmigratedOutput(string sampling, int n, bool stop)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(processor: true);
        await using ProcessorServer second = await AddProcessorAsync(h);
        InferenceEngine engine = InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, MigrationTests.Roomy);
        await h.AddWorkerAsync(engine, contextLength: 2048);
        await WaitForProcessorsAsync(h, [h.Processor!, second]);
        string body = await BodyAsync(h, sampling, n, stop);
        Streamed reference = Streamed.Parse((await h.PostSseAsync(Chat, body)).Data, n);

        Streamed migrated = await KillMidStreamAsync(h, engine, body, n, processors: [h.Processor!, second]);

        output.WriteLine(body);
        output.WriteLine(string.Join("\n---\n", migrated.Texts));
        AssertSameStream(reference, migrated);
        Assert.Equal([(FrontendHarness.Model, ProcessorRelay.MigrationReason, 1L)], h.Server.Registry.Migration.Migrations());
        string metrics = await h.Http.GetStringAsync("/metrics");
        Assert.Contains("dynamo_frontend_migrations_total{model=\"tiny\",reason=\"processor\"} 1", metrics);
    }

    [Fact]
    public async Task BuiltInEngine_OnlyProcessorStopsMidStream_TheFrontendsOwnPipelineContinues()
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(processor: true);
        InferenceEngine engine = InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, MigrationTests.Roomy);
        await h.AddWorkerAsync(engine, contextLength: 2048);
        await WaitForProcessorsAsync(h, [h.Processor!]);
        string body = await BodyAsync(h, "\"temperature\":1,\"seed\":11", n: 2, stop: true);
        Streamed reference = Streamed.Parse((await h.PostSseAsync(Chat, body)).Data, 2);

        Streamed migrated = await KillMidStreamAsync(h, engine, body, 2, processors: [h.Processor!]);

        AssertSameStream(reference, migrated);
        Assert.Equal(1, h.Server.Registry.Migration.Total);
    }

    [Fact]
    public async Task MigrationLimitZero_ProcessorStopsMidStream_TheClientGetsTheErrorAndItIsCounted()
    {
        FrontendOptions options = FrontendOptions.Default with { Processing = FrontendOptions.Default.Processing with { MigrationLimit = 0 } };
        await using FrontendHarness h = await FrontendHarness.StartAsync(options, processor: true);
        await using ProcessorServer second = await AddProcessorAsync(h);
        var engine = new HeldEchoEngine();
        await h.AddWorkerAsync(engine);
        await WaitForProcessorsAsync(h, [h.Processor!, second]);
        engine.Hold(steps: 3);

        (HttpResponseMessage response, StreamReader reader, List<string> data) = await MigrationTests.OpenStreamAsync(h, Body("\"temperature\":0", 1, null), chunks: 1);
        using HttpResponseMessage held = response;
        using StreamReader heldReader = reader;
        ProcessorServer serving = h.Processor!.InflightRequests == 1 ? h.Processor : second;
        await MigrationTests.StopAndReadToEndAsync(reader, data, stop: () => serving.DisposeAsync().AsTask(), release: engine.Release);

        MigrationTests.AssertFailedUnmigrated(h, data, "processor_unreachable");
    }

    [Theory]
    [InlineData("""{"v":2,"kind":"chat","request_id":"x","body":{"model":"tiny","messages":[]}}""", "invalid_request")]
    [InlineData("""{"v":1,"kind":"chat","request_id":"x","body":{"model":"tiny","messages":[]},"resume":[]}""", "invalid_request")]
    [InlineData("""{"v":3,"kind":"chat","request_id":"x","body":{"model":"tiny","messages":[]},"resume":[]}""", "unsupported_version")]
    public async Task Processor_ResumeOutsideVersion2_Refused(string request, string code)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(processor: true);
        await using EndpointClient client = await h.Runtime.CreateClientAsync(ProcessorServer.AddressFor("dynamo"));

        RequestPlaneException e = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> _ in client.StreamAsync(System.Text.Encoding.UTF8.GetBytes(request)))
            {
            }
        });

        Assert.Equal(code, e.Code);
    }

    [Theory]
    [InlineData(RequestErrorKind.Unreachable, "server_stopped", true)]
    [InlineData(RequestErrorKind.Unreachable, "instance_left", true)]
    [InlineData(RequestErrorKind.Unreachable, "idle_timeout", true)]
    [InlineData(RequestErrorKind.NoResponders, "no_responders", true)]
    [InlineData(RequestErrorKind.Interrupted, "frame_gap", true)]
    [InlineData(RequestErrorKind.Transport, "connection_closed", true)]
    [InlineData(RequestErrorKind.Transport, "ack_timeout", false)]
    [InlineData(RequestErrorKind.Unavailable, "request_plane_unavailable", false)]
    [InlineData(RequestErrorKind.Remote, "internal", false)]
    [InlineData(RequestErrorKind.DeadlineExceeded, "deadline_exceeded", false)]
    public void IsProcessorGone_ByFailure(RequestErrorKind kind, string code, bool gone) =>
        Assert.Equal(gone, ProcessorRelay.IsProcessorGone(new RequestPlaneException(kind, code, "x")));

    /// <summary>
    /// Streams <paramref name="body"/> with the engine held after a few more steps, stops the processor relaying it
    /// once content came, lets the engine go on once the frontend migrated the stream, and reads it to its end. The
    /// other processor, if any, takes the stream.
    /// </summary>
    private static async Task<Streamed> KillMidStreamAsync(FrontendHarness h, InferenceEngine engine, string body, int n, ProcessorServer[] processors)
    {
        ManualResetEventSlim gate = MigrationTests.HoldFrom(MigrationTests.StepsBefore(engine) + 12, hook => engine.Core.BeforeStep = hook);
        (HttpResponseMessage response, StreamReader reader, List<string> data) = await MigrationTests.OpenStreamAsync(h, body, chunks: 3);
        using HttpResponseMessage held = response;
        using StreamReader heldReader = reader;
        ProcessorServer serving = Assert.Single(processors, p => p.InflightRequests == 1);
        ProcessorServer[] others = [.. processors.Where(p => p != serving)];
        long before = others.Sum(p => p.Requests);
        Task stopping = serving.DisposeAsync().AsTask();
        await MigrationTests.WaitUntilAsync(() => h.Server.Registry.Migration.Total == 1);
        gate.Set();
        await MigrationTests.ReadDataAsync(reader, data, until: () => data.Count > 0 && data[^1] == "[DONE]");
        await stopping;
        Assert.Equal(before + others.Length, others.Sum(p => p.Requests));
        return Streamed.Parse(data, n);
    }

    private static void AssertSameStream(Streamed reference, Streamed migrated)
    {
        Assert.Equal(reference.Texts, migrated.Texts);
        Assert.Equal(reference.FinishReasons, migrated.FinishReasons);
        Assert.All(migrated.RoleChunks, roles => Assert.Equal(1, roles));
        Assert.Equal((reference.PromptTokens, reference.CompletionTokens), (migrated.PromptTokens, migrated.CompletionTokens));
    }

    /// <summary>A second Processor component, as the harness starts its first.</summary>
    private static async Task<ProcessorServer> AddProcessorAsync(FrontendHarness h) =>
        await ProcessorServer.StartAsync(await h.Cluster.ConnectAsync(), h.Processor!.Registry.Options);

    /// <summary>Waits until every processor serves the model and the frontend lists them all.</summary>
    private static async Task WaitForProcessorsAsync(FrontendHarness h, ProcessorServer[] processors)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        foreach (ProcessorServer p in processors)
        {
            await p.WaitForModelAsync(FrontendHarness.Model, timeout.Token);
        }

        while ((await h.Server.Registry.ProcessorsAsync())?.AvailableInstances.Count != processors.Length)
        {
            await Task.Delay(10, timeout.Token);
        }
    }

    /// <summary>
    /// The request; with <paramref name="stop"/>, a stop string from late in the first choice's unstopped text, so
    /// that the choice stops after the migration.
    /// </summary>
    private static async Task<string> BodyAsync(FrontendHarness h, string sampling, int n, bool stop)
    {
        string body = Body(sampling, n, null);
        if (!stop)
        {
            return body;
        }

        string text = Streamed.Parse((await h.PostSseAsync(Chat, body)).Data, n).Texts[0];
        for (int at = text.Length * 2 / 3; at + 3 <= text.Length; at++)
        {
            string candidate = text.Substring(at, 3);
            if (!char.IsSurrogate(candidate[0]) && !char.IsSurrogate(candidate[^1]) && text.IndexOf(candidate, StringComparison.Ordinal) == at)
            {
                return Body(sampling, n, candidate);
            }
        }

        throw new InvalidOperationException($"no stop string in the last third of '{text}'");
    }

    private static string Body(string sampling, int n, string? stop) =>
        $$"""{"model":"{{FrontendHarness.Model}}","messages":[{"role":"user","content":"tell me a long story about the sea"}],"max_tokens":{{MaxTokens}},"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true},"n":{{n}},{{(stop is null ? "" : $"\"stop\":{JsonSerializer.Serialize(stop)},")}}{{sampling}}}""";

    /// <summary>A chat stream read back per choice: its text, role chunks and finish reason, and the usage (no error event allowed).</summary>
    private sealed record Streamed(string[] Texts, int[] RoleChunks, string?[] FinishReasons, int PromptTokens, int CompletionTokens)
    {
        public static Streamed Parse(List<string> data, int n)
        {
            var texts = new System.Text.StringBuilder[n];
            var roles = new int[n];
            var finish = new string?[n];
            int prompt = 0;
            int completion = 0;
            for (int i = 0; i < n; i++)
            {
                texts[i] = new System.Text.StringBuilder();
            }

            foreach (JsonElement e in new Sse(200, "text/event-stream", data, []).Events())
            {
                Assert.False(e.TryGetProperty("error", out _), e.GetRawText());
                if (e.TryGetProperty("usage", out JsonElement usage) && usage.ValueKind == JsonValueKind.Object)
                {
                    prompt = usage.GetProperty("prompt_tokens").GetInt32();
                    completion = usage.GetProperty("completion_tokens").GetInt32();
                }

                foreach (JsonElement choice in e.GetProperty("choices").EnumerateArray())
                {
                    int i = choice.GetProperty("index").GetInt32();
                    JsonElement delta = choice.GetProperty("delta");
                    roles[i] += delta.TryGetProperty("role", out _) ? 1 : 0;
                    if (delta.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String)
                    {
                        texts[i].Append(content.GetString());
                    }

                    if (choice.TryGetProperty("finish_reason", out JsonElement f) && f.ValueKind == JsonValueKind.String)
                    {
                        Assert.Null(finish[i]);
                        finish[i] = f.GetString();
                    }
                }
            }

            return new Streamed([.. texts.Select(t => t.ToString())], roles, finish, prompt, completion);
        }
    }
}

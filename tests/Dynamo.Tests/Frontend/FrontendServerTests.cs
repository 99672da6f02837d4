using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Dynamo.Components.Processing;
using Dynamo.Engine.Serving;
using Dynamo.Frontend;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Tokenizers;
using Dynamo.Mocker;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Llm.Engines;
using OpenAI;
using OpenAI.Chat;

namespace Dynamo.Tests.Frontend;

/// <summary>The HTTP API against real Kestrel on 127.0.0.1 and workers on an in-process runtime.</summary>
public class FrontendServerTests
{
    private protected const string Chat = "/v1/chat/completions";
    private protected const string Completions = "/v1/completions";

    /// <summary>Whether the frontend relays every request to a Processor component (<see cref="FrontendThroughProcessorTests"/>).</summary>
    private protected virtual bool ThroughProcessor => false;

    private protected Task<FrontendHarness> StartAsync(FrontendOptions? options = null) => FrontendHarness.StartAsync(options, processor: ThroughProcessor);

    private static ITokenizer Tokenizer => FrontendHarness.Bundle.Value.Tokenizer;

    internal static IReadOnlyList<int> ChatPrompt(params (string Role, string Content)[] messages)
    {
        var bundle = FrontendHarness.Bundle.Value;
        string rendered = bundle.ChatTemplate!.RenderChat([.. messages.Select(m => new Dynamo.Llm.ChatTemplates.ChatMessage(m.Role, m.Content))], true, bundle.BosToken, bundle.EosToken);
        return bundle.Tokenizer.Encode(rendered, addSpecialTokens: false);
    }

    /// <summary>What the frontend must return when the engine generates <paramref name="output"/> after <paramref name="prompt"/>.</summary>
    internal static string Detokenize(IReadOnlyList<int> prompt, IEnumerable<int> output)
    {
        var d = new IncrementalDetokenizer(Tokenizer, skipSpecialTokens: true, prompt);
        return string.Concat(output.Select(d.Push)) + d.Flush();
    }

    [Fact]
    public async Task ChatCompletions_NonStreaming_EchoesTheRenderedPrompt()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = ChatPrompt(("system", "Be brief."), ("user", "Hi there"));

        var (status, body) = await h.PostJsonAsync(Chat, """{"model":"tiny","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi there"}]}]}""");

        Assert.Equal(200, status);
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", body.GetProperty("id").GetString());
        Assert.Equal("tiny", body.GetProperty("model").GetString());
        JsonElement choice = Assert.Single(body.GetProperty("choices").EnumerateArray());
        Assert.Equal(0, choice.GetProperty("index").GetInt32());
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        string content = choice.GetProperty("message").GetProperty("content").GetString()!;
        Assert.Equal(Detokenize(prompt, prompt), content);
        Assert.Contains("Hi\u2581there", content);
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.Null, choice.GetProperty("logprobs").ValueKind);
        JsonElement usage = body.GetProperty("usage");
        Assert.Equal(prompt.Count, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(prompt.Count, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(2 * prompt.Count, usage.GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task ChatCompletions_Streaming_RoleChunkThenContentThenFinishThenDone()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = ChatPrompt(("user", "Hello stream"));

        Sse sse = await h.PostSseAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"Hello stream"}],"stream":true,"max_tokens":5}""");

        Assert.Equal(200, sse.Status);
        Assert.Equal("text/event-stream", sse.ContentType);
        List<JsonElement> events = sse.Events();
        Assert.All(events, e => Assert.Equal("chat.completion.chunk", e.GetProperty("object").GetString()));
        Assert.Single(events.Select(e => e.GetProperty("id").GetString()).Distinct());
        JsonElement first = events[0].GetProperty("choices")[0];
        Assert.Equal("assistant", first.GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal(JsonValueKind.Null, first.GetProperty("finish_reason").ValueKind);
        Assert.All(events.Skip(1), e => Assert.False(e.GetProperty("choices")[0].GetProperty("delta").TryGetProperty("role", out _)));
        string content = string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("delta")).Select(d => d.TryGetProperty("content", out JsonElement c) ? c.GetString() : ""));
        Assert.Equal(Detokenize(prompt, prompt.Take(5)), content);
        JsonElement last = events[^1].GetProperty("choices")[0];
        Assert.Equal("length", last.GetProperty("finish_reason").GetString());
        Assert.Empty(last.GetProperty("delta").EnumerateObject());
        Assert.False(events[^1].TryGetProperty("usage", out _));
    }

    [Fact]
    public async Task Completions_NonStreamingAndStreaming_EchoThePrompt()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = Tokenizer.Encode("hello world, again", addSpecialTokens: true);
        string expected = Detokenize(prompt, prompt);
        Assert.Equal("\u2581hello\u2581world,\u2581again", expected); // the synthetic vocabulary spells spaces as byte pieces of "▁"

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"hello world, again","max_tokens":100}""");
        Assert.Equal(200, status);
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        JsonElement choice = Assert.Single(body.GetProperty("choices").EnumerateArray());
        Assert.Equal(expected, choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());

        Sse sse = await h.PostSseAsync(Completions, """{"model":"tiny","prompt":"hello world, again","max_tokens":100,"stream":true}""");
        List<JsonElement> events = sse.Events();
        Assert.All(events, e => Assert.Equal("text_completion", e.GetProperty("object").GetString()));
        Assert.Equal(expected, string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.Equal("stop", events[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Completions_DefaultMaxTokens_Is16AndFinishLength()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        int[] prompt = [.. Enumerable.Range(10, 40)];

        var (status, body) = await h.PostJsonAsync(Completions, $$"""{"model":"tiny","prompt":[{{string.Join(',', prompt)}}]}""");

        Assert.Equal(200, status);
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(16, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(40, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(Detokenize(prompt, prompt.Take(16)), body.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Theory]
    [InlineData(Chat, """{"model":"tiny","messages":[{"role":"user","content":"usage please"}],"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData(Completions, """{"model":"tiny","prompt":"usage please","stream":true,"max_tokens":3,"stream_options":{"include_usage":true}}""")]
    public async Task Streaming_IncludeUsage_LastChunkHasUsageAndNoChoices(string path, string json)
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        List<JsonElement> events = (await h.PostSseAsync(path, json)).Events();

        JsonElement last = events[^1];
        Assert.Equal(0, last.GetProperty("choices").GetArrayLength());
        JsonElement usage = last.GetProperty("usage");
        Assert.True(usage.GetProperty("prompt_tokens").GetInt32() > 0);
        Assert.True(usage.GetProperty("completion_tokens").GetInt32() > 0);
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());
        Assert.All(events.Take(events.Count - 1), e => Assert.False(e.TryGetProperty("usage", out _)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Completions_StopString_TextCutBeforeItFinishStop(bool stream)
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = Tokenizer.Encode("one two three four five", addSpecialTokens: true);
        string full = Detokenize(prompt, prompt);
        string expected = full[..full.IndexOf("\u2581four", StringComparison.Ordinal)];
        string json = $$"""{"model":"tiny","prompt":"one two three four five","max_tokens":50,"stop":["\u2581four","zzz"],"stream":{{(stream ? "true" : "false")}}}""";

        string text;
        string? finish;
        if (stream)
        {
            List<JsonElement> events = (await h.PostSseAsync(Completions, json)).Events();
            text = string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString()));
            finish = events[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString();
        }
        else
        {
            var (status, body) = await h.PostJsonAsync(Completions, json);
            Assert.Equal(200, status);
            text = body.GetProperty("choices")[0].GetProperty("text").GetString()!;
            finish = body.GetProperty("choices")[0].GetProperty("finish_reason").GetString();
        }

        Assert.Equal(expected, text);
        Assert.Equal("stop", finish);
    }

    [Fact]
    public async Task ChatCompletions_Logprobs_OpenAiShapeWithTopAlternatives()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = ChatPrompt(("user", "lp"));

        var (status, body) = await h.PostJsonAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"lp"}],"logprobs":true,"top_logprobs":2,"max_tokens":4}""");

        Assert.Equal(200, status);
        JsonElement content = body.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content");
        Assert.Equal(4, content.GetArrayLength());
        for (int i = 0; i < 4; i++)
        {
            JsonElement entry = content[i];
            Assert.Equal(Tokenizer.Decode([prompt[i]], skipSpecialTokens: false), entry.GetProperty("token").GetString());
            Assert.Equal(0f, entry.GetProperty("logprob").GetSingle());
            Assert.True(entry.GetProperty("bytes").GetArrayLength() > 0);
            JsonElement top = entry.GetProperty("top_logprobs");
            Assert.Equal(2, top.GetArrayLength());
            Assert.Equal(entry.GetProperty("token").GetString(), top[0].GetProperty("token").GetString());
            Assert.Equal(-100f, top[1].GetProperty("logprob").GetSingle());
        }
    }

    [Fact]
    public async Task Completions_Logprobs_ParallelArrays()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":[5,6,7],"logprobs":1}""");

        Assert.Equal(200, status);
        JsonElement lp = body.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(3, lp.GetProperty("tokens").GetArrayLength());
        Assert.Equal(3, lp.GetProperty("token_logprobs").GetArrayLength());
        Assert.Equal(3, lp.GetProperty("top_logprobs").GetArrayLength());
        Assert.Equal(3, lp.GetProperty("text_offset").GetArrayLength());
        Assert.Equal(Tokenizer.Decode([6], false), lp.GetProperty("tokens")[1].GetString());
        Assert.Equal(0f, lp.GetProperty("top_logprobs")[2].GetProperty(Tokenizer.Decode([7], false)).GetSingle());
    }

    [Fact]
    public async Task Completions_NTwoAndTwoPrompts_FourChoicesIndexedPromptMajor()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":[[10,11,12],[20,21]],"n":2,"seed":7,"temperature":0.5}""");

        Assert.Equal(200, status);
        JsonElement[] choices = [.. body.GetProperty("choices").EnumerateArray()];
        Assert.Equal([0, 1, 2, 3], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal(Detokenize([10, 11, 12], [10, 11, 12]), choices[1].GetProperty("text").GetString());
        Assert.Equal(Detokenize([20, 21], [20, 21]), choices[2].GetProperty("text").GetString());
        Assert.Equal(5, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(10, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ChatCompletions_StreamingNTwo_EachChoiceHasRoleContentAndFinish()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = ChatPrompt(("user", "two"));

        List<JsonElement> events = (await h.PostSseAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"two"}],"n":2,"stream":true}""")).Events();

        for (int i = 0; i < 2; i++)
        {
            JsonElement[] mine = [.. events.Select(e => e.GetProperty("choices")[0]).Where(c => c.GetProperty("index").GetInt32() == i)];
            Assert.Equal("assistant", mine[0].GetProperty("delta").GetProperty("role").GetString());
            Assert.Equal(Detokenize(prompt, prompt), string.Concat(mine.Select(c => c.GetProperty("delta").TryGetProperty("content", out JsonElement t) ? t.GetString() : "")));
            Assert.Equal("stop", mine[^1].GetProperty("finish_reason").GetString());
        }
    }

    [Fact]
    public async Task Models_AppearWithFirstWorkerAndDisappearWithLast()
    {
        await using FrontendHarness h = await StartAsync();
        Assert.Empty((await h.Http.GetFromJsonElementAsync("/v1/models")).GetProperty("data").EnumerateArray());

        TestWorker a = await h.AddWorkerAsync(FrontendHarness.Echo());
        TestWorker b = await h.AddWorkerAsync(FrontendHarness.Echo());
        await h.AddWorkerAsync(FrontendHarness.Echo(), model: "other", component: "other");
        JsonElement list = await h.Http.GetFromJsonElementAsync("/v1/models");
        Assert.Equal("list", list.GetProperty("object").GetString());
        Assert.Equal(["other", "tiny"], list.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
        JsonElement tiny = list.GetProperty("data")[1];
        Assert.Equal("model", tiny.GetProperty("object").GetString());
        Assert.Equal("dynamo", tiny.GetProperty("owned_by").GetString());
        Assert.True(tiny.GetProperty("created").GetInt64() > 1_600_000_000);

        await a.DisposeAsync();
        await Eventually(() => h.Server.Models.Count == 2 && h.Server.Models.Contains("tiny"));
        await b.DisposeAsync();
        await Eventually(() => !h.Server.Models.Contains("tiny"));
        Assert.Equal(["other"], (await h.Http.GetFromJsonElementAsync("/v1/models")).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
        var (status, body) = await h.PostJsonAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}]}""");
        Assert.Equal(404, status);
        Assert.Equal("model_not_found", body.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task RetrieveModel_ServedAndUnknownIds_ModelObjectOr404ModelNotFound()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo(), model: "org/name-v1", component: "org");
        await Eventually(() => h.Server.Models.Contains("org/name-v1"));

        // The OpenAI SDK's models.retrieve("org/name-v1") asks GET /v1/models/org/name-v1, the slash as it is.
        using HttpResponseMessage found = await h.Http.GetAsync("/v1/models/org/name-v1");
        Assert.Equal(HttpStatusCode.OK, found.StatusCode);
        Assert.Equal("application/json", found.Content.Headers.ContentType?.MediaType);
        using JsonDocument model = JsonDocument.Parse(await found.Content.ReadAsStringAsync());
        Assert.Equal(["id", "object", "created", "owned_by"], model.RootElement.EnumerateObject().Select(p => p.Name));
        Assert.Equal("org/name-v1", model.RootElement.GetProperty("id").GetString());
        Assert.Equal("model", model.RootElement.GetProperty("object").GetString());
        Assert.Equal("dynamo", model.RootElement.GetProperty("owned_by").GetString());
        JsonElement listed = (await h.Http.GetFromJsonElementAsync("/v1/models")).GetProperty("data")[0];
        Assert.Equal(listed.GetProperty("created").GetInt64(), model.RootElement.GetProperty("created").GetInt64());

        using HttpResponseMessage missing = await h.Http.GetAsync("/v1/models/no-such-model");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        using JsonDocument error = JsonDocument.Parse(await missing.Content.ReadAsStringAsync());
        JsonElement e = error.RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", e.GetProperty("type").GetString());
        Assert.Equal("model", e.GetProperty("param").GetString());
        Assert.Equal("model_not_found", e.GetProperty("code").GetString());
        Assert.Contains("'no-such-model'", e.GetProperty("message").GetString(), StringComparison.Ordinal);

        var sdk = new OpenAI.Models.OpenAIModelClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(h.Server.BaseAddress, "/v1") });
        OpenAI.Models.OpenAIModel retrieved = (await sdk.GetModelAsync("org/name-v1")).Value;
        Assert.Equal("org/name-v1", retrieved.Id);
        Assert.Equal("dynamo", retrieved.OwnedBy);
        ClientResultException notFound = await Assert.ThrowsAsync<ClientResultException>(() => sdk.GetModelAsync("no-such-model"));
        Assert.Equal(404, notFound.Status);
    }

    [Fact]
    public async Task Requests_TwoModelsAndTwoInstances_EachModelsPoolServesItRoundRobin()
    {
        await using FrontendHarness h = await StartAsync();
        TestWorker a1 = await h.AddWorkerAsync(FrontendHarness.Echo());
        TestWorker a2 = await h.AddWorkerAsync(FrontendHarness.Echo());
        TestWorker b = await h.AddWorkerAsync(FrontendHarness.Echo(), model: "big", component: "big");

        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(200, (await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"x"}""")).Status);
        }

        Assert.Equal(200, (await h.PostJsonAsync(Completions, """{"model":"big","prompt":"x"}""")).Status);
        Assert.Equal(2, a1.Engine.Stats.RequestsFinished);
        Assert.Equal(2, a2.Engine.Stats.RequestsFinished);
        Assert.Equal(1, b.Engine.Stats.RequestsFinished);
    }

    [Fact]
    public async Task Health_NoWorker503_WorkerListedWith200()
    {
        await using FrontendHarness h = await StartAsync();
        using (HttpResponseMessage none = await h.Http.GetAsync("/health"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, none.StatusCode);
            Assert.Equal("unhealthy", JsonDocument.Parse(await none.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
        }

        TestWorker w = await h.AddWorkerAsync(FrontendHarness.Echo());
        using HttpResponseMessage ok = await h.Http.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        JsonElement health = JsonDocument.Parse(await ok.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("healthy", health.GetProperty("status").GetString());
        Assert.Equal(["dynamo.backend.generate"], health.GetProperty("endpoints").EnumerateArray().Select(e => e.GetString()));
        string id = w.Runtime.InstanceId.ToString("x");
        Assert.Contains(health.GetProperty("instances").EnumerateArray(), i => i.GetProperty("instance_id").GetString() == id);
        Assert.Equal(id, health.GetProperty("models")[0].GetProperty("instances")[0].GetString());
        Assert.Equal(HttpStatusCode.OK, (await h.Http.GetAsync("/live")).StatusCode);
    }

    [Fact]
    public async Task Live_DuringShutdown_503AndInFlightStreamStillCompletes()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo(TimeSpan.FromMilliseconds(50)));
        Task<Sse> stream = h.PostSseAsync(Completions, """{"model":"tiny","prompt":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20],"max_tokens":20,"stream":true}""");
        await Eventually(() => h.Server.Models.Count == 1 && !stream.IsCompleted);
        await Task.Delay(200);

        Task dispose = h.DisposeServerAsync().AsTask();
        using var live = new HttpClient { BaseAddress = h.Server.BaseAddress };
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await live.GetAsync("/live")).StatusCode);
        using (HttpResponseMessage refused = await live.PostAsync(Completions, new StringContent("""{"model":"tiny","prompt":"x"}""")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        }

        Sse sse = await stream;
        List<JsonElement> events = sse.Events();
        Assert.Equal("stop", events[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        await dispose;
    }

    [Fact]
    public async Task Shutdown_DrainTimeoutOver_InFlightStreamEndsWithErrorEventAndDone()
    {
        await using FrontendHarness h = await StartAsync(FrontendOptions.Default with { ShutdownDrainTimeout = TimeSpan.FromMilliseconds(100) });
        TestWorker w = await h.AddWorkerAsync(FrontendHarness.Echo(TimeSpan.FromMilliseconds(100)));
        Task<Sse> stream = h.PostSseAsync(Completions, """{"model":"tiny","prompt":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20],"max_tokens":20,"stream":true}""");

        // Several tokens in, so that the frontend has surely started the event stream on a busy machine
        // (before the first event an error is a plain HTTP error instead).
        await Eventually(() => w.Engine.Stats.GeneratedTokens >= 6);

        await h.DisposeServerAsync();

        Sse sse = await stream;
        Assert.Equal("[DONE]", sse.Data[^1]);
        Assert.Equal("shutting_down", JsonDocument.Parse(sse.Data[^2]).RootElement.GetProperty("error").GetProperty("code").GetString());
        await Eventually(() => w.Engine.Stats.RunningRequests == 0);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Disconnect_MidRequest_CancelsDownToTheEngine(bool stream)
    {
        await using FrontendHarness h = await StartAsync();
        TestWorker w = await h.AddWorkerAsync(FrontendHarness.Echo(TimeSpan.FromMilliseconds(100)));

        // A client that hangs up: disposing a response not read to its end closes the connection. (By default
        // SocketsHttpHandler first drains it for up to 2 s to reuse the connection: the server saw a client still
        // reading, and the test measured the drain timeout rather than the disconnect.)
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = h.Server.BaseAddress };
        using var cancel = new CancellationTokenSource();
        string json = $$"""{"model":"tiny","prompt":[{{string.Join(',', Enumerable.Range(1, 200))}}],"max_tokens":50,"stream":{{(stream ? "true" : "false")}}}""";
        Task<HttpResponseMessage> request = client.SendAsync(new HttpRequestMessage(HttpMethod.Post, Completions) { Content = new StringContent(json) }, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        await Eventually(() => w.Engine.Stats.RunningRequests == 1 && w.Engine.Stats.GeneratedTokens >= 2);

        if (stream)
        {
            using HttpResponseMessage response = await request;
            Stream body = await response.Content.ReadAsStreamAsync();
            int read = await body.ReadAsync(new byte[64]);
            Assert.True(read > 0);
            response.Dispose();
        }
        else
        {
            await cancel.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
        }

        await Eventually(() => w.Engine.Stats.RunningRequests == 0);
        Assert.True(w.Engine.Stats.GeneratedTokens < 40);
        await Eventually(async () => (await h.Http.GetStringAsync("/metrics")).Contains("dynamo_frontend_model_cancellation_total{model=\"tiny\"} 1", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Streaming_100Parallel_AllCompleteWithValidSse()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo(TimeSpan.FromMilliseconds(1)));
        IReadOnlyList<int> prompt = ChatPrompt(("user", "parallel"));
        string expected = Detokenize(prompt, prompt.Take(20));

        Sse[] results = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ =>
            h.PostSseAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"parallel"}],"stream":true,"max_tokens":20}""")));

        Assert.All(results, sse =>
        {
            Assert.Equal(200, sse.Status);
            List<JsonElement> events = sse.Events();
            Assert.DoesNotContain(events, e => e.TryGetProperty("error", out _));
            Assert.Equal(expected, string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("delta")).Select(d => d.TryGetProperty("content", out JsonElement c) ? c.GetString() : "")));
        });
    }

    [Fact]
    public async Task KeepAlive_SlowFirstToken_CommentLinesBeforeData()
    {
        await using FrontendHarness h = await StartAsync(FrontendOptions.Default with { KeepAliveInterval = TimeSpan.FromMilliseconds(50) });
        await h.AddWorkerAsync(FrontendHarness.Echo(TimeSpan.FromMilliseconds(400)));

        Sse sse = await h.PostSseAsync(Completions, """{"model":"tiny","prompt":[1,2],"stream":true}""");

        Assert.Equal(200, sse.Status);
        Assert.Contains(": keep-alive", sse.Comments);
        Assert.Equal("stop", sse.Events()[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task Body_OverTheLimit_413()
    {
        await using FrontendHarness h = await StartAsync(FrontendOptions.Default with { MaxRequestBodyBytes = 2048 });
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, body) = await h.PostJsonAsync(Completions, $$"""{"model":"tiny","prompt":"{{new string('a', 4096)}}"}""");

        Assert.Equal(413, status);
        Assert.Equal("request_too_large", body.GetProperty("error").GetProperty("code").GetString());

        // Chunked: the server answers 413 as soon as the limit is crossed and closes the connection, so a
        // client still sending may see a broken pipe instead of the answer (a client-side race): a few tries.
        HttpStatusCode? seen = null;
        for (int attempt = 0; attempt < 5 && seen is null; attempt++)
        {
            using var chunked = new HttpRequestMessage(HttpMethod.Post, Completions) { Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes($$"""{"model":"tiny","prompt":"{{new string('a', 4096)}}"}"""))) };
            chunked.Headers.TransferEncodingChunked = true;
            try
            {
                using HttpResponseMessage response = await h.Http.SendAsync(chunked);
                seen = response.StatusCode;
            }
            catch (HttpRequestException)
            {
            }
        }

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, seen);
    }

    [Fact]
    public async Task Body_InvalidUtf8_400()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        byte[] json = [.. Encoding.UTF8.GetBytes("""{"model":"tiny","prompt":"a"""), 0xC3, 0x28, .. Encoding.UTF8.GetBytes("\"}")];

        using HttpResponseMessage response = await h.Http.PostAsync(Completions, new ByteArrayContent(json));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        JsonElement error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("invalid_encoding", error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
    }

    public static TheoryData<string, string, int, string?> BadRequests => new()
    {
        { Chat, "{not json", 400, null },
        { Chat, "[1,2]", 400, null },
        { Chat, "null", 400, null },
        { Chat, "", 400, null },
        { Chat, """{"messages":[{"role":"user","content":"x"}]}""", 400, "model" },
        { Chat, """{"model":"tiny"}""", 400, "messages" },
        { Chat, """{"model":"tiny","messages":[]}""", 400, "messages" },
        { Chat, """{"model":"tiny","messages":"hi"}""", 400, "messages" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":"hot"}""", 400, "temperature" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":"10"}""", 400, "max_tokens" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"n":1.5}""", 400, "n" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"stream":"yes"}""", 400, "stream" },
        { Chat, """{"model":"tiny","messages":[{"role":7,"content":"x"}]}""", 400, "messages[0].role" },
        { Chat, """{"model":"tiny","messages":[{"role":"wizard","content":"x"}]}""", 400, "messages[0].role" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":{"a":1}}]}""", 400, "messages[0].content" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", 400, "messages[0].content[0].type" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":2.5}""", 400, "temperature" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":-0.1}""", 400, "temperature" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_p":1.5}""", 400, "top_p" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"presence_penalty":-2.5}""", 400, "presence_penalty" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"frequency_penalty":3}""", 400, "frequency_penalty" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}""", 400, "top_logprobs" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_logprobs":2}""", 400, "top_logprobs" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"n":0}""", 400, "n" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"n":129}""", 400, "n" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":0}""", 400, "max_tokens" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":-5}""", 400, "max_tokens" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_completion_tokens":0}""", 400, "max_completion_tokens" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999}""", 400, "max_tokens" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":5}""", 400, "stop" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":[""]}""", 400, "stop" },
        { Chat, """{"model":"nope","messages":[{"role":"user","content":"x"}]}""", 404, "model" },
        { Completions, """{"model":"tiny"}""", 400, "prompt" },
        { Completions, """{"model":"tiny","prompt":[]}""", 400, "prompt" },
        { Completions, """{"model":"tiny","prompt":{"x":1}}""", 400, "prompt" },
        { Completions, """{"model":"tiny","prompt":[1,"a"]}""", 400, "prompt" },
        { Completions, """{"model":"tiny","prompt":[100000]}""", 400, "prompt" },
        { Completions, """{"model":"tiny","prompt":"x","logprobs":21}""", 400, "logprobs" },
        { Completions, """{"model":"tiny","prompt":"x","logprobs":true}""", 400, "logprobs" },
        { Completions, """{"model":"tiny","prompt":"x","max_tokens":1000}""", 400, "prompt" },
        { Completions, """{"model":"tiny","prompt":"x","echo":true}""", 400, "echo" },
        { Completions, """{"model":"tiny","prompt":"x","best_of":3}""", 400, "best_of" },
        { Completions, """{"model":"tiny","prompt":"x","suffix":"end"}""", 400, "suffix" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"a\ud800b"}]}""", 400, "messages[0].content" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"},{"role":"user","content":[{"type":"text","text":"\udc00"}]}]}""", 400, "messages[1].content[0].text" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":["ok","a\ud800\u0041"]}""", 400, "stop[1]" },
        { Chat, """{"model":"tiny\ud800","messages":[{"role":"user","content":"x"}]}""", 400, "model" },
        { Completions, """{"model":"tiny","prompt":"\ud800"}""", 400, "prompt" },
        { Completions, """{"model":"tiny","prompt":["ok","\udfff\ud800"]}""", 400, "prompt[1]" },
        { Completions, """{"model":"tiny","prompt":"x","stop":"\udc00"}""", 400, "stop" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}""", 400, "tools" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}""", 400, "tool_choice" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"functions":[{"name":"f"}]}""", 400, "functions" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"function_call":{"name":"f"}}""", 400, "function_call" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}""", 400, "response_format" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"logit_bias":{"1":5}}""", 400, "logit_bias" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"logit_bias":7}""", 400, "logit_bias" },
        { Chat, """{"model":"tiny","messages":[{"role":"user","content":"x"}],"min_tokens":3}""", 400, "min_tokens" },
        { Completions, """{"model":"tiny","prompt":"x","logit_bias":[1]}""", 400, "logit_bias" },
        { Completions, """{"model":"tiny","prompt":"x","min_tokens":"5"}""", 400, "min_tokens" },
        { Completions, """{"model":"tiny","prompt":"x","best_of":0}""", 400, "best_of" },
        { Completions, """{"model":"tiny","prompt":"x","best_of":-2}""", 400, "best_of" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Request_Invalid_OpenAiErrorWithStatusAndParam(string path, string json, int status, string? param)
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        using HttpResponseMessage response = await h.PostAsync(path, json);

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        JsonElement error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.True(error.TryGetProperty("code", out _));
        if (param is not null)
        {
            Assert.Equal(param, error.GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task Request_PromptPlusMaxTokensOverContext_400WithTheNumbers()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, body) = await h.PostJsonAsync(Completions, $$"""{"model":"tiny","prompt":[{{string.Join(',', Enumerable.Range(1, 100))}}],"max_tokens":200}""");

        Assert.Equal(400, status);
        string message = body.GetProperty("error").GetProperty("message").GetString()!;
        Assert.Contains("256", message);
        Assert.Contains("300", message);
        Assert.Contains("100", message);
        Assert.Contains("200", message);
        Assert.Equal("context_length_exceeded", body.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Completions_EchoFalseBestOfEqualNEmptySuffix_Accepted()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"x","echo":false,"best_of":2,"n":2,"suffix":"","max_tokens":2}""");

        Assert.Equal(200, status);
        Assert.Equal(2, body.GetProperty("choices").GetArrayLength());
    }

    [Fact]
    public async Task Request_UnknownFieldsAndNullsIgnored_200()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, _) = await h.PostJsonAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"x","extra":1}],"tools_whatever":{"a":[1,2]},"temperature":null,"user":"u1","seed":-3,"top_k":5,"min_p":0.1,"repetition_penalty":1.1,"ignore_eos":true}""");

        Assert.Equal(200, status);
    }

    [Theory]
    [InlineData(Chat, """{"model":"tiny","messages":[{"role":"user","content":"smile \ud83d\ude00"}],"tools":[],"functions":null,"tool_choice":"none","function_call":"none","response_format":{"type":"text"},"logit_bias":{},"min_tokens":0,"max_tokens":2}""")]
    [InlineData(Completions, """{"model":"tiny","prompt":"\ud83d\ude00 \\ud800","stop":"\ud83d\ude00","logit_bias":null,"min_tokens":null,"best_of":1,"max_tokens":2}""")]
    public async Task Request_NoOpFormsOfUnsupportedFieldsAndSurrogatePairs_200(string path, string json)
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());

        var (status, body) = await h.PostJsonAsync(path, json);

        Assert.True(status == 200, body.ToString());
    }

    [Fact]
    public async Task Request_NoInstanceAnswers_503WithRetryAfter()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo(), serve: false);

        using HttpResponseMessage response = await h.PostAsync(Completions, """{"model":"tiny","prompt":"x"}""");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.NotNull(response.Headers.RetryAfter);
        Assert.Equal("service_unavailable_error", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("dynamo_frontend_model_rejection_total{model=\"tiny\"} 1", await h.Http.GetStringAsync("/metrics"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Request_WorkerRefusesPayload_400()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(new EchoEngine(EchoEngineOptions.Default with { VocabSize = 100 }));

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":[300]}""");

        Assert.Equal(400, status);
        Assert.Equal("invalid_request", body.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task Streaming_WorkerVanishesMidStream_ErrorEventThenDone()
    {
        await using FrontendHarness h = await StartAsync();
        TestWorker w = await h.AddWorkerAsync(FrontendHarness.Echo(TimeSpan.FromMilliseconds(50)));
        Task<Sse> stream = h.PostSseAsync(Completions, """{"model":"tiny","prompt":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20],"max_tokens":20,"stream":true}""");
        await Eventually(() => w.Engine.Stats.GeneratedTokens >= 3);

        await w.DisposeAsync();

        Sse sse = await stream;
        Assert.Equal("[DONE]", sse.Data[^1]);
        JsonElement error = JsonDocument.Parse(sse.Data[^2]).RootElement.GetProperty("error");
        Assert.Equal("service_unavailable_error", error.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Metrics_AfterRequests_ExposeEveryFrontendMetric()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":"metrics"}""");
        await h.PostSseAsync(Chat, """{"model":"tiny","messages":[{"role":"user","content":"m"}],"stream":true}""");
        await h.PostJsonAsync(Chat, """{"model":"tiny","messages":[]}""");

        using HttpResponseMessage response = await h.Http.GetAsync("/metrics");
        string text = await response.Content.ReadAsStringAsync();

        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        foreach (string name in new[]
        {
            "dynamo_frontend_requests_total", "dynamo_frontend_inflight_requests", "dynamo_frontend_queued_requests",
            "dynamo_frontend_time_to_first_token_seconds", "dynamo_frontend_inter_token_latency_seconds",
            "dynamo_frontend_request_duration_seconds", "dynamo_frontend_input_sequence_tokens",
            "dynamo_frontend_output_sequence_tokens", "dynamo_frontend_output_tokens_total",
            "dynamo_frontend_model_cancellation_total", "dynamo_frontend_model_rejection_total",
        })
        {
            Assert.Contains($"# TYPE {name} ", text, StringComparison.Ordinal);
        }

        Assert.Contains("dynamo_frontend_requests_total{model=\"tiny\",endpoint=\"completions\",request_type=\"unary\",status=\"success\"} 1", text, StringComparison.Ordinal);
        Assert.Contains("dynamo_frontend_requests_total{model=\"tiny\",endpoint=\"chat_completions\",request_type=\"stream\",status=\"success\"} 1", text, StringComparison.Ordinal);
        Assert.Contains("dynamo_frontend_requests_total{model=\"tiny\",endpoint=\"chat_completions\",request_type=\"unary\",status=\"error\"} 1", text, StringComparison.Ordinal);
        Assert.Contains("dynamo_frontend_time_to_first_token_seconds_count{model=\"tiny\"} 2", text, StringComparison.Ordinal);
        Assert.Contains("dynamo_frontend_inflight_requests{model=\"tiny\"} 0", text, StringComparison.Ordinal);
        Assert.Contains("dynamo_frontend_queued_requests{model=\"tiny\",stage=\"worker\"} 0", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Routes_Unknown_404OpenAiError()
    {
        await using FrontendHarness h = await StartAsync();

        using HttpResponseMessage response = await h.Http.GetAsync("/v1/nothing");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("unknown_route", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public void Options_Invalid_MessageNamesTheFlag()
    {
        Assert.Contains("--router-mode", Assert.Throws<ArgumentException>(() => (FrontendOptions.Default with { Processing = ProcessorOptions.Default with { RouterMode = "fastest" } }).Validate()).Message);
        Assert.Contains("--http-port", Assert.Throws<ArgumentException>(() => (FrontendOptions.Default with { HttpPort = 70000 }).Validate()).Message);
        Assert.Equal("kv", (FrontendOptions.Default with { Processing = ProcessorOptions.Default with { RouterMode = "kv" } }).Validate().Processing.RouterMode);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ChatCompletions_RealTinyModelGreedy_SameAsEngineDirectlyDetokenized(bool stream)
    {
        IReadOnlyList<int> prompt = ChatPrompt(("system", "You are terse."), ("user", "Count to three"));
        await using InferenceEngine direct = InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        var (tokens, _, last) = await EngineContractTests.CollectAsync(direct, new EngineRequest("direct", prompt, SamplingParams.Greedy with { MaxTokens = 12 }));
        string expected = Detokenize(prompt, tokens);
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 }));
        string json = $$$"""{"model":"tiny","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Count to three"}],"temperature":0,"max_tokens":12,"stream":{{{(stream ? "true" : "false")}}},"stream_options":{"include_usage":true}}""";

        string content;
        string? finish;
        JsonElement usage;
        if (stream)
        {
            List<JsonElement> events = (await h.PostSseAsync(Chat, json)).Events();
            content = string.Concat(events.Where(e => e.GetProperty("choices").GetArrayLength() > 0).Select(e => e.GetProperty("choices")[0].GetProperty("delta")).Select(d => d.TryGetProperty("content", out JsonElement c) ? c.GetString() : ""));
            finish = events[^2].GetProperty("choices")[0].GetProperty("finish_reason").GetString();
            usage = events[^1].GetProperty("usage");
        }
        else
        {
            var (status, body) = await h.PostJsonAsync(Chat, json);
            Assert.Equal(200, status);
            content = body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
            finish = body.GetProperty("choices")[0].GetProperty("finish_reason").GetString();
            usage = body.GetProperty("usage");
        }

        Assert.Equal(expected, content);
        Assert.Equal(last.FinishReason!.Value.ToWire(), finish);
        Assert.Equal(tokens.Count, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(prompt.Count, usage.GetProperty("prompt_tokens").GetInt32());
    }

    [Theory]
    [InlineData(false, "round-robin")]
    [InlineData(true, "round-robin")]
    [InlineData(false, "kv")]
    [InlineData(true, "kv")]
    public async Task ChatCompletions_RepeatedPrompt_UsageHasTheEnginesCachedTokens(bool stream, string routerMode)
    {
        const string Text = "Tell me a long story about a lighthouse keeper and the storm that changed his island forever";
        IReadOnlyList<int> prompt = ChatPrompt(("user", Text));
        await using InferenceEngine direct = InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        _ = await EngineContractTests.CollectAsync(direct, new EngineRequest("first", prompt, SamplingParams.Greedy with { MaxTokens = 4 }));
        var (_, _, again) = await EngineContractTests.CollectAsync(direct, new EngineRequest("again", prompt, SamplingParams.Greedy with { MaxTokens = 4 }));
        Assert.True(again.CachedTokens > 0, "the engine's prefix cache should hold the repeated prompt");
        await using FrontendHarness h = await StartAsync(FrontendOptions.Default with { Processing = FrontendOptions.Default.Processing with { RouterMode = routerMode } });
        await h.AddWorkerAsync(InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 }));
        string json = $$$"""{"model":"tiny","messages":[{"role":"user","content":"{{{Text}}}"}],"temperature":0,"max_tokens":4,"stream":{{{(stream ? "true" : "false")}}},"stream_options":{"include_usage":true}}""";

        async Task<JsonElement> UsageAsync()
        {
            if (stream)
            {
                return (await h.PostSseAsync(Chat, json)).Events()[^1].GetProperty("usage");
            }

            var (status, body) = await h.PostJsonAsync(Chat, json);
            Assert.Equal(200, status);
            return body.GetProperty("usage");
        }

        JsonElement first = await UsageAsync();
        JsonElement second = await UsageAsync();

        Assert.Equal(0, first.TryGetProperty("prompt_tokens_details", out JsonElement none) ? none.GetProperty("cached_tokens").GetInt32() : 0);
        Assert.Equal(prompt.Count, second.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(again.CachedTokens, second.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
    }

    [Fact]
    public async Task Completions_RealTinyModelGreedyTokenPrompt_SameAsEngineDirectly()
    {
        int[] prompt = [1, 40, 41, 300, 301, 7];
        await using InferenceEngine direct = InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 });
        var (tokens, _, _) = await EngineContractTests.CollectAsync(direct, new EngineRequest("direct", prompt, SamplingParams.Greedy with { MaxTokens = 10, IgnoreEos = true }));
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(InferenceEngineTests.Create(FrontendHarness.TinyChatModel.Value, EngineOptions.Default with { KvCacheMemory = 16L << 20 }));

        var (status, body) = await h.PostJsonAsync(Completions, """{"model":"tiny","prompt":[1,40,41,300,301,7],"temperature":0,"max_tokens":10,"ignore_eos":true}""");

        Assert.Equal(200, status);
        Assert.Equal(Detokenize(prompt, tokens), body.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal("length", body.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task OpenAiDotNetClient_ChatStreamingAndNot_Works()
    {
        await using FrontendHarness h = await StartAsync();
        await h.AddWorkerAsync(FrontendHarness.Echo());
        IReadOnlyList<int> prompt = ChatPrompt(("user", "Hello client"));
        var client = new ChatClient("tiny", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(h.Server.BaseAddress, "/v1") });
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 6, Temperature = 0 };

        ChatCompletion completion = (await client.CompleteChatAsync([new UserChatMessage("Hello client")], options)).Value;
        Assert.Equal(Detokenize(prompt, prompt.Take(6)), completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(6, completion.Usage.OutputTokenCount);
        Assert.Equal(prompt.Count, completion.Usage.InputTokenCount);

        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (StreamingChatCompletionUpdate update in client.CompleteChatStreamingAsync([new UserChatMessage("Hello client")], options))
        {
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            finish ??= update.FinishReason;
        }

        Assert.Equal(Detokenize(prompt, prompt.Take(6)), text.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);

        var models = new OpenAI.Models.OpenAIModelClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(h.Server.BaseAddress, "/v1") });
        Assert.Equal(["tiny"], (await models.GetModelsAsync()).Value.Select(m => m.Id));

        ClientResultException error = await Assert.ThrowsAsync<ClientResultException>(() => new ChatClient("missing", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(h.Server.BaseAddress, "/v1") }).CompleteChatAsync([new UserChatMessage("x")]));
        Assert.Equal(404, error.Status);
    }

    internal static async Task Eventually(Func<bool> condition, int timeoutMs = 10000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(10);
        }
    }

    internal static async Task Eventually(Func<Task<bool>> condition, int timeoutMs = 10000)
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "condition not met in time");
            await Task.Delay(10);
        }
    }
}

internal static class HttpClientJsonExtensions
{
    public static async Task<JsonElement> GetFromJsonElementAsync(this HttpClient http, string path) =>
        JsonDocument.Parse(await http.GetStringAsync(path)).RootElement.Clone();
}

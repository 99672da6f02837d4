using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Dynamo.Tests.Frontend;

/// <summary>
/// The response bytes, pinned: chat and completions, streamed and not, with and without log probabilities,
/// n &gt; 1 and usage, against the echo engine (deterministic), compared byte for byte with the files in
/// Golden/ (only the response id and the created time are masked; the chunks of several choices, whose
/// interleaving is not part of the contract, are grouped by choice, each choice's chunks in their order).
/// Run through a Processor component too (<see cref="ResponseGoldenThroughProcessorTests"/>): same bytes.
/// DYNAMO_UPDATE_GOLDEN=1 rewrites the files instead of comparing.
/// </summary>
public partial class ResponseGoldenTests
{
    private const string Chat = "/v1/chat/completions";
    private const string Completions = "/v1/completions";

    private protected virtual bool ThroughProcessor => false;

    public static TheoryData<string, string, string> Cases => new()
    {
        { "chat-stream", Chat, """{"model":"tiny","messages":[{"role":"user","content":"Hi <b> & \"you\""}],"stream":true,"max_tokens":6}""" },
        { "chat-stream-logprobs", Chat, """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":3,"logprobs":true,"top_logprobs":2}""" },
        { "chat-stream-n2-usage", Chat, """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":4,"n":2,"stream_options":{"include_usage":true}}""" },
        { "chat-stream-stop", Chat, """{"model":"tiny","messages":[{"role":"user","content":"hello there"}],"stream":true,"stop":["there"]}""" },
        { "chat-unary-logprobs-n2", Chat, """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":3,"n":2,"logprobs":true,"top_logprobs":1}""" },
        { "completions-stream", Completions, """{"model":"tiny","prompt":"Once upon a time, <caf\u00e9>","stream":true,"max_tokens":8}""" },
        { "completions-stream-logprobs", Completions, """{"model":"tiny","prompt":"Once upon","stream":true,"max_tokens":3,"logprobs":2}""" },
        { "completions-stream-n2-usage", Completions, """{"model":"tiny","prompt":["ab","cd"],"stream":true,"max_tokens":3,"n":2,"stream_options":{"include_usage":true}}""" },
        { "completions-stream-logprobs0", Completions, """{"model":"tiny","prompt":"Once","stream":true,"max_tokens":2,"logprobs":0}""" },
        { "completions-unary-logprobs-n2", Completions, """{"model":"tiny","prompt":["ab","cd"],"max_tokens":3,"n":2,"logprobs":1}""" },
        { "completions-unary-stop", Completions, """{"model":"tiny","prompt":"one two three","stop":"two"}""" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Response_GoldenCase_SameBytes(string name, string path, string body)
    {
        await using FrontendHarness h = await FrontendHarness.StartAsync(processor: ThroughProcessor);
        await h.AddWorkerAsync(FrontendHarness.Echo());

        using HttpResponseMessage response = await h.PostAsync(path, body);
        string text = await response.Content.ReadAsStringAsync();

        string actual = $"{(int)response.StatusCode} {response.Content.Headers.ContentType}\n{Normalize(text)}";
        string file = Path.Combine(SourceDirectory(), "Golden", name + ".txt");
        if (Environment.GetEnvironmentVariable("DYNAMO_UPDATE_GOLDEN") == "1")
        {
            await File.WriteAllTextAsync(file, actual);
            return;
        }

        Assert.True(File.Exists(file), $"no golden file {file} (DYNAMO_UPDATE_GOLDEN=1 writes it)");
        Assert.Equal(await File.ReadAllTextAsync(file), actual);
    }

    /// <summary>The response with its id and created time masked and, in a stream, each choice's events together.</summary>
    internal static string Normalize(string body)
    {
        body = ResponseId().Replace(body, "\"id\":\"$1-ID\"");
        body = Created().Replace(body, "\"created\":0");
        if (!body.StartsWith("data: ", StringComparison.Ordinal))
        {
            return body;
        }

        string[] events = body.Split("\n\n");
        var ordered = events.Select((e, i) => (Event: e, Order: i, Choice: ChoiceOf(e))).OrderBy(e => e.Choice).ThenBy(e => e.Order);
        return string.Join("\n\n", ordered.Select(e => e.Event));
    }

    /// <summary>The index of an event's first choice; events without one (usage, [DONE], the empty tail) sort last.</summary>
    private static int ChoiceOf(string sseEvent)
    {
        if (!sseEvent.StartsWith("data: {", StringComparison.Ordinal))
        {
            return int.MaxValue;
        }

        using var json = JsonDocument.Parse(Encoding.UTF8.GetBytes(sseEvent["data: ".Length..]));
        return json.RootElement.TryGetProperty("choices", out JsonElement choices) && choices.GetArrayLength() > 0
            ? choices[0].GetProperty("index").GetInt32()
            : int.MaxValue;
    }

    private static string SourceDirectory([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    [GeneratedRegex("\"id\":\"(chatcmpl|cmpl)-[0-9a-f]{32}\"")]
    private static partial Regex ResponseId();

    [GeneratedRegex("\"created\":[0-9]+")]
    private static partial Regex Created();
}

using System.Text;
using System.Text.Json;
using Dynamo.Components.Processing;
using Dynamo.Llm.Preprocessing;

namespace Dynamo.Tests.Components.Processing;

/// <summary>
/// The Processor component's wire, pinned: the frontend's requests (version 1, and version 2 with the output a
/// migrated request resumes from) and the processor's frames (a delta with its token ids, and a delta as an
/// older processor writes it, without them).
/// </summary>
public sealed class ProcessorProtocolJsonTests
{
    private const string Body = """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"n":2}""";

    private const string RequestJson = """{"v":1,"kind":"chat","request_id":"chatcmpl-1","body":""" + Body + "}";

    private const string ResumedRequestJson =
        """{"v":2,"kind":"chat","request_id":"chatcmpl-1-p1","body":""" + Body + ""","resume":[{"index":0,"token_ids":[5,6,7]},{"index":1,"token_ids":[]}]}""";

    private const string DeltaJson =
        """{"t":"delta","index":1,"text":"sea","text_offset":12,"finish_reason":"length","new_tokens":2,"completion_tokens":9,"cached_tokens":16,"token_ids":[501,2147483647]}""";

    private const string OlderDeltaJson = """{"t":"delta","index":1,"text":"sea","text_offset":12,"new_tokens":2,"completion_tokens":9}""";

    private const string StartJson = """{"t":"start","choices":2,"n":2,"prompt_tokens":9,"stream":true,"include_usage":true,"logprobs":1,"top_logprobs":2}""";

    private static readonly ChoiceEvent Delta = new(1, new ChoiceDelta("sea", null, 12, "length"), 2, 9, 16, null) { TokenIds = new[] { 501, int.MaxValue } };

    [Fact]
    public void BuildRequest_New_MatchesGoldenAndReadsBack()
    {
        ReadOnlyMemory<byte> json = ProcessorRelay.BuildRequest(Encoding.UTF8.GetBytes(Body), ResponseShape.Chat, "chatcmpl-1", null);

        Assert.Equal(RequestJson, Encoding.UTF8.GetString(json.Span));
        ProcessorRequest read = JsonSerializer.Deserialize(json.Span, ProcessorJsonContext.Default.ProcessorRequest)!;
        Assert.Equal((1, "chat", "chatcmpl-1", Body), (read.Version, read.Kind, read.RequestId, read.Body.GetRawText()));
        Assert.Null(read.Resume);
    }

    [Fact]
    public void BuildRequest_Resumed_Version2WithEveryUnfinishedChoiceAndReadsBack()
    {
        ResumedChoice[] resume = [new() { Index = 0, TokenIds = [5, 6, 7] }, new() { Index = 1, TokenIds = [] }];

        ReadOnlyMemory<byte> json = ProcessorRelay.BuildRequest(Encoding.UTF8.GetBytes(Body), ResponseShape.Chat, "chatcmpl-1-p1", resume);

        Assert.Equal(ResumedRequestJson, Encoding.UTF8.GetString(json.Span));
        ProcessorRequest read = JsonSerializer.Deserialize(json.Span, ProcessorJsonContext.Default.ProcessorRequest)!;
        Assert.Equal(ProcessorRequest.ResumeVersion, read.Version);
        Assert.Equal(["0:5,6,7", "1:"], read.Resume!.Select(c => $"{c.Index}:{string.Join(',', c.TokenIds)}"));
    }

    [Fact]
    public void SerializeDelta_WithTokenIds_MatchesGoldenBothWays()
    {
        Assert.Equal(DeltaJson, Encoding.UTF8.GetString(ProcessorServer.SerializeDelta(Delta)));
        Assert.Equal(DeltaJson, Encoding.UTF8.GetString(ProcessorServer.SerializeDeltaWithSerializer(Delta)));
    }

    [Fact]
    public void ReadEvent_Golden_TheEventWithItsTokenIdsBothWays()
    {
        byte[] json = Encoding.UTF8.GetBytes(DeltaJson);

        ProcessorDeltaReaderTests.AssertSame(Delta, ProcessorRelay.ReadEvent(json));
        ProcessorDeltaReaderTests.AssertSame(Delta, ProcessorRelay.ReadEventWithSerializer(json));
    }

    [Fact]
    public void ReadEvent_AnOlderProcessorsDelta_TheSameEventWithoutTokenIds()
    {
        byte[] json = Encoding.UTF8.GetBytes(OlderDeltaJson);
        ChoiceEvent expected = new(1, new ChoiceDelta("sea", null, 12, null), 2, 9, 0, null);

        ChoiceEvent read = ProcessorRelay.ReadEvent(json);

        Assert.Equal(expected, read);
        Assert.Equal(expected, ProcessorRelay.ReadEventWithSerializer(json));
        Assert.NotEqual(read.NewTokens, read.TokenIds.Length);
    }

    [Fact]
    public void StartFrame_MatchesGolden()
    {
        var start = new ProcessorFrame { Type = ProcessorFrame.StartType, Choices = 2, N = 2, PromptTokens = 9, Stream = true, IncludeUsage = true, Logprobs = 1, TopLogprobs = 2 };

        Assert.Equal(StartJson, Encoding.UTF8.GetString(ProcessorServer.Serialize(start)));
        Assert.Equal(start, JsonSerializer.Deserialize(StartJson, ProcessorJsonContext.Default.ProcessorFrame));
    }
}

using System.Text;
using Dynamo.Components.Processing;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Tests.Components.Processing;

/// <summary>The processor's delta frames written and read without the serializer, against the serializer both ways.</summary>
public sealed class ProcessorDeltaReaderTests
{
    private static ChoiceEvent RandomEvent(Random rng)
    {
        string text = rng.Next(4) switch { 0 => "", 1 => "stop", 2 => "h\u00e9llo <\"world\">\n", _ => new string((char)rng.Next(32, 0x3000), rng.Next(1, 4)) };
        string? finish = rng.Next(3) switch { 0 => "stop", 1 => "length", _ => null };
        int[] ids = [.. Enumerable.Range(0, rng.Next(4)).Select(_ => rng.Next(4) == 0 ? int.MaxValue - rng.Next(3) : rng.Next(100_000))];
        return new ChoiceEvent(rng.Next(3), new ChoiceDelta(text, null, rng.Next(3) == 0 ? 0 : rng.Next(1000), finish), ids.Length, rng.Next(3) == 0 ? 0 : rng.Next(5000), rng.Next(2) * rng.Next(500), null)
        {
            TokenIds = ids,
        };
    }

    /// <summary>Asserts two events equal, their token ids by value (the event holds a slice of wherever they were kept).</summary>
    internal static void AssertSame(ChoiceEvent expected, ChoiceEvent actual)
    {
        Assert.Equal(expected.TokenIds.ToArray(), actual.TokenIds.ToArray());
        Assert.Equal(expected with { TokenIds = default }, actual with { TokenIds = default });
    }

    [Fact]
    public void Write_RandomEvents_SameBytesAsTheSerializerAndReadBackTheSameBothWays()
    {
        var rng = new Random(3);
        for (int i = 0; i < 2000; i++)
        {
            ChoiceEvent e = RandomEvent(rng);

            byte[] frame = ProcessorServer.SerializeDelta(e);

            Assert.Equal(Encoding.UTF8.GetString(ProcessorServer.SerializeDeltaWithSerializer(e)), Encoding.UTF8.GetString(frame));
            Assert.True(ProcessorDeltaReader.TryRead(frame, out ChoiceEvent read));
            AssertSame(e, read);
            AssertSame(ProcessorRelay.ReadEventWithSerializer(frame), read);
        }
    }

    [Fact]
    public void ReadEvent_WithLogs_TheTokenIdsOfEachChoiceAppendedInOrderBothWays()
    {
        var rng = new Random(5);
        TokenLog[] fast = [new(), new(), new()];
        TokenLog[] serializer = [new(), new(), new()];
        var expected = new List<int>[] { [], [], [] };
        for (int i = 0; i < 500; i++)
        {
            ChoiceEvent e = RandomEvent(rng);
            byte[] frame = ProcessorServer.SerializeDelta(e);

            ChoiceEvent read = ProcessorRelay.ReadEvent(frame, fast);
            ChoiceEvent slow = ProcessorRelay.ReadEventWithSerializer(frame, serializer);

            AssertSame(e, read);
            AssertSame(e, slow);
            expected[e.Index].AddRange(e.TokenIds.ToArray());
        }

        for (int c = 0; c < 3; c++)
        {
            Assert.Equal(expected[c], fast[c].All.ToArray());
            Assert.Equal(expected[c], serializer[c].All.ToArray());
        }
    }

    [Theory]
    [InlineData("""{"t":"start","choices":1,"n":1,"prompt_tokens":3,"stream":true}""")]
    [InlineData("""{"t":"error","status":503,"error":{"message":"m","type":"t"}}""")]
    [InlineData("""{"index":1,"t":"delta","text":"a"}""")]
    [InlineData("""{"t":"delta","text":"a","text":"b"}""")]
    [InlineData("""{"t":"delta","text":null}""")]
    [InlineData("""{"t":"delta","text":"a","future_field":1}""")]
    [InlineData("""{"t":"delta","token_ids":[1,"2"]}""")]
    [InlineData("""{"t":"delta","token_ids":[1],"token_ids":[2]}""")]
    [InlineData("""{"t":"delta","token_ids":[1.5]}""")]
    [InlineData("""{"t":"delta","text":"a","token_logprobs":[{"token":"a","logprob":-1,"bytes":[97],"top_logprobs":[]}]}""")]
    public void TryRead_OtherFrames_LeftToTheSerializer(string json)
    {
        Assert.False(ProcessorDeltaReader.TryRead(Encoding.UTF8.GetBytes(json), out _));
    }

    [Fact]
    public void SerializeDelta_WithLogprobs_TheSerializersBytesAndReadBack()
    {
        var entry = new ChatTokenLogprob { Token = "a", Logprob = -1, Bytes = [97], TopLogprobs = [new ChatTopLogprob { Token = "b", Logprob = -2, Bytes = [98] }] };
        var e = new ChoiceEvent(1, new ChoiceDelta("a", [entry], 4, "stop"), 1, 5, 0, null);

        byte[] frame = ProcessorServer.SerializeDelta(e);

        Assert.Equal(ProcessorServer.SerializeDeltaWithSerializer(e), frame);
        ChoiceEvent read = ProcessorRelay.ReadEvent(frame);
        Assert.Equal("a", Assert.Single(read.Delta.Logprobs!).Token);
        AssertSame(e with { Delta = e.Delta with { Logprobs = read.Delta.Logprobs } }, read);
    }
}

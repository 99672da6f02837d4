using System.Text;
using System.Text.Json;
using Dynamo.Llm.Protocols.Worker;

namespace Dynamo.Tests.Llm.Protocols.Worker;

/// <summary>The one-pass reader of generate responses against the serializer: same values, same failures, and nothing allocated for the usual frame.</summary>
public sealed class GenerateResponseReaderTests
{
    private static string Canonical(GenerateResponse response) => JsonSerializer.Serialize(response, WorkerJsonContext.Default.GenerateResponse);

    private static GenerateResponse RandomResponse(Random rng)
    {
        int count = rng.Next(0, 4);
        bool logprobs = rng.Next(2) == 0;
        bool last = rng.Next(3) == 0;
        return new GenerateResponse
        {
            TokenIds = [.. Enumerable.Range(0, count).Select(_ => rng.Next(5) switch { 0 => 0, 1 => int.MaxValue, _ => rng.Next(0, 200_000) })],
            Logprobs = logprobs ? [.. Enumerable.Range(0, count).Select(_ => rng.Next(4) switch { 0 => 0f, 1 => float.MinValue, 2 => -1e-30f, _ => -rng.NextSingle() * 30 })] : null,
            FinishReason = last ? (rng.Next(3) switch { 0 => "stop", 1 => "length", _ => "cancelled" }) : null,
            PromptTokens = last ? rng.Next(0, 100_000) : null,
            CachedTokens = last ? rng.Next(0, 100_000) : null,
        };
    }

    [Fact]
    public void TryReadFast_RandomFramesAsWorkersWriteThem_TakesEveryOneAndAgreesWithTheSerializer()
    {
        var rng = new Random(12);
        var reader = new GenerateResponseReader();
        for (int i = 0; i < 2000; i++)
        {
            GenerateResponse sent = RandomResponse(rng);
            byte[] frame = JsonSerializer.SerializeToUtf8Bytes(sent, WorkerJsonContext.Default.GenerateResponse);

            Assert.True(reader.TryReadFast(frame), Encoding.UTF8.GetString(frame));
            string fast = Canonical(reader.ToResponse());
            reader.ReadWithSerializer(frame);

            Assert.Equal(Canonical(reader.ToResponse()), fast);
            Assert.Equal(Canonical(sent), fast);
        }
    }

    [Theory]
    [InlineData("""{"token_ids":[1,2],"logprobs":[-0.5,-1],"finish_reason":"length","prompt_tokens":3,"cached_tokens":0}""", true)]
    [InlineData(""" { "cached_tokens" : 16 , "token_ids" : [ 7 ] , "finish_reason" : "st\u006fp" } """, true)]
    [InlineData("""{"token_ids":[1],"finish_reason":null,"prompt_tokens":null,"cached_tokens":null}""", true)]
    [InlineData("""{"token_ids":[1],"finish_reason":"exploded"}""", true)]
    [InlineData("""{"token_ids":[],"logprobs":[]}""", true)]
    [InlineData("""{"token_ids":[1],"top_logprobs":[[{"token_id":1,"logprob":-0.5},{"token_id":2,"logprob":-3}]],"logprobs":[-0.5]}""", false)]
    [InlineData("""{"token_ids":[1],"extra":{"a":[1,2]}}""", false)]
    [InlineData("""{"token_ids":[1],"token_ids":[2]}""", false)]
    [InlineData("""{"token_ids":[1],"logprobs":null}""", false)]
    [InlineData("""{"token_ids":[1],"top_logprobs":null}""", false)]
    public void Read_OtherShapes_SameValuesAsTheSerializer(string json, bool fast)
    {
        byte[] frame = Encoding.UTF8.GetBytes(json);
        var reader = new GenerateResponseReader();

        Assert.Equal(fast, reader.TryReadFast(frame));
        reader.Read(frame);

        Assert.Equal(Canonical(JsonSerializer.Deserialize(frame, WorkerJsonContext.Default.GenerateResponse)!), Canonical(reader.ToResponse()));
    }

    [Theory]
    [InlineData("null")]
    [InlineData("[]")]
    [InlineData("{")]
    [InlineData("""{"logprobs":[-1]}""")]
    [InlineData("""{"token_ids":[1]} x""")]
    [InlineData("""{"token_ids":[1.5]}""")]
    [InlineData("""{"token_ids":[2147483648]}""")]
    [InlineData("""{"token_ids":["1"]}""")]
    [InlineData("""{"token_ids":[1],"prompt_tokens":"3"}""")]
    [InlineData("""{"token_ids":[1],"finish_reason":5}""")]
    public void Read_NotAResponse_FailsAsTheSerializer(string json)
    {
        byte[] frame = Encoding.UTF8.GetBytes(json);
        Exception expected = Assert.ThrowsAny<Exception>(() => JsonSerializer.Deserialize(frame, WorkerJsonContext.Default.GenerateResponse) ?? throw new InvalidDataException("null generate response"));
        var reader = new GenerateResponseReader();

        Assert.False(reader.TryReadFast(frame));
        Exception actual = Assert.ThrowsAny<Exception>(() => reader.Read(frame));

        Assert.Equal(expected.GetType(), actual.GetType());
    }

    [Fact]
    public void Read_WorkerFrames_AllocateNothing()
    {
        byte[][] frames =
        [
            .. new[] { """{"token_ids":[42]}""", """{"token_ids":[7,8],"logprobs":[-0.25,-1.5]}""", """{"token_ids":[9],"finish_reason":"length","prompt_tokens":12,"cached_tokens":0}""" }
                .Select(Encoding.UTF8.GetBytes),
        ];
        var reader = new GenerateResponseReader();
        long sum = 0;
        void Step()
        {
            foreach (byte[] frame in frames)
            {
                reader.Read(frame);
                sum += reader.TokenIds[0] + (reader.FinishReason?.Length ?? 0);
            }
        }

        Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            Step();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.True(sum > 0);
    }
}

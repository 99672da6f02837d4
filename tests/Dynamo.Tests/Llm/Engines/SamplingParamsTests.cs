using Dynamo.Llm.Engines;

namespace Dynamo.Tests.Llm.Engines;

public sealed class SamplingParamsTests
{
    public static TheoryData<string, SamplingParams> OutOfRange => new()
    {
        { "temperature", SamplingParams.Default with { Temperature = 2.5f } },
        { "temperature", SamplingParams.Default with { Temperature = -0.1f } },
        { "temperature", SamplingParams.Default with { Temperature = float.NaN } },
        { "top_p", SamplingParams.Default with { TopP = 0f } },
        { "top_p", SamplingParams.Default with { TopP = 1.01f } },
        { "min_p", SamplingParams.Default with { MinP = 1.5f } },
        { "top_k", SamplingParams.Default with { TopK = -2 } },
        { "top_logprobs", SamplingParams.Default with { Logprobs = true, TopLogprobs = 21 } },
        { "top_logprobs", SamplingParams.Default with { TopLogprobs = -1 } },
        { "max_tokens", SamplingParams.Default with { MaxTokens = 0 } },
        { "repetition_penalty", SamplingParams.Default with { RepetitionPenalty = 3f } },
        { "repetition_penalty", SamplingParams.Default with { RepetitionPenalty = 0f } },
        { "frequency_penalty", SamplingParams.Default with { FrequencyPenalty = 3f } },
        { "presence_penalty", SamplingParams.Default with { PresencePenalty = -3f } },
        { "stop", SamplingParams.Default with { Stop = ["ok", ""] } },
    };

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void Validate_OutOfRangeField_ThrowsNamingField(string field, SamplingParams p)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => p.Validate());

        Assert.Equal(field, e.ParamName);
        Assert.StartsWith(field + ":", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_BoundaryValues_Accepted()
    {
        SamplingParams p = new()
        {
            Temperature = 2f, TopP = 1f, MinP = 1f, TopK = -1, RepetitionPenalty = 2f, FrequencyPenalty = -2f,
            PresencePenalty = 2f, MaxTokens = 1, Logprobs = true, TopLogprobs = 20, Stop = ["x"],
        };

        Assert.Same(p, p.Validate());
        Assert.Same(SamplingParams.Default, SamplingParams.Default.Validate());
        Assert.Equal(0f, SamplingParams.Greedy.Validate().Temperature);
    }

    [Theory]
    [InlineData(FinishReason.Stop, "stop")]
    [InlineData(FinishReason.Length, "length")]
    [InlineData(FinishReason.Cancelled, "cancelled")]
    public void ToWire_EachReason_OpenAiName(FinishReason reason, string expected)
    {
        Assert.Equal(expected, reason.ToWire());
    }

    [Fact]
    public void ToWire_UndefinedValue_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ((FinishReason)0).ToWire());
    }
}

using Dynamo.Mocker;

namespace Dynamo.Tests.Mocker;

public sealed class MockerOptionsTests
{
    public static TheoryData<MockerOptions, string> Bad => new()
    {
        { MockerOptions.Default with { BlockSize = 0 }, "--block-size" },
        { MockerOptions.Default with { NumGpuBlocks = 0 }, "--num-gpu-blocks" },
        { MockerOptions.Default with { MaxNumSeqs = 0 }, "--max-num-seqs" },
        { MockerOptions.Default with { MaxNumBatchedTokens = 0 }, "--max-num-batched-tokens" },
        { MockerOptions.Default with { ContextLength = 1 }, "--context-length" },
        { MockerOptions.Default with { SpeedupRatio = 0 }, "--speedup-ratio" },
        { MockerOptions.Default with { SpeedupRatio = double.NaN }, "--speedup-ratio" },
        { MockerOptions.Default with { StepMs = -1 }, "--step-ms" },
        { MockerOptions.Default with { PrefillMsPerToken = double.PositiveInfinity }, "--prefill-ms-per-token" },
        { MockerOptions.Default with { AttentionMsPerTokenPair = -0.5 }, "--attention-ms-per-token-pair" },
        { MockerOptions.Default with { DecodeMsPerSequence = double.NaN }, "--decode-ms-per-seq" },
        { MockerOptions.Default with { MaxStepMs = -1 }, "--max-step-ms" },
        { MockerOptions.Default with { MaxStepMs = double.NaN }, "--max-step-ms" },
        { MockerOptions.Default with { VocabSize = 0 }, "--vocab-size" },
        { MockerOptions.Default with { EventHistory = 0 }, "event history" },
    };

    [Theory]
    [MemberData(nameof(Bad))]
    public void Validate_BadSetting_NamesTheFlag(MockerOptions options, string flag)
    {
        Assert.Contains(flag, Assert.Throws<ArgumentException>(() => options.Validate()).Message);
        Assert.Contains(flag, Assert.Throws<ArgumentException>(() => new MockerEngine(options)).Message);
    }

    [Fact]
    public void Validate_Defaults_AreValid()
    {
        Assert.Same(MockerOptions.Default, MockerOptions.Default.Validate());
        Assert.Equal(16, MockerOptions.Default.BlockSize);
        Assert.Equal(1, MockerOptions.Default.SpeedupRatio);
    }

    [Fact]
    public void StepTime_Defaults_FollowTheDocumentedModel()
    {
        MockerOptions d = MockerOptions.Default;
        Assert.Equal(8 + 0.05 * 1000, d.StepTime(1000, 0, 0).TotalMilliseconds, 6);
        Assert.Equal(8 + 0.1 * 256, d.StepTime(0, 0, 256).TotalMilliseconds, 6);
        Assert.Equal(8 + 0.05 * 100 + 0.1 * 10, d.StepTime(100, 5050, 10).TotalMilliseconds, 6);
        Assert.Equal((8 + 0.05 * 100 + 0.001 * 5050 + 0.1 * 10) / 4, (d with { AttentionMsPerTokenPair = 0.001, SpeedupRatio = 4 }).StepTime(100, 5050, 10).TotalMilliseconds, 6);
        Assert.Equal(TimeSpan.Zero, (d with { SpeedupRatio = double.PositiveInfinity }).StepTime(1000, 0, 10));
    }
}

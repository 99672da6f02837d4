using Dynamo.Llm.Engines;
using Dynamo.Mocker;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Mocker;

/// <summary>The mocker on the real clock: its steps take at least the modelled time divided by the speedup ratio (a wall-clock bound, so alone in <see cref="TimingCollection"/>).</summary>
[Collection(TimingCollection.Name)]
public sealed class MockerEngineRealClockTests
{
    private static SamplingParams Tokens(int maxTokens) => SamplingParams.Greedy with { MaxTokens = maxTokens, IgnoreEos = true };

    private static Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> CollectAsync(IEngine engine, EngineRequest request) =>
        EngineContractTests.CollectAsync(engine, request);

    [Fact]
    public async Task Submit_RealClockWithSpeedup_TakesAtLeastTheModelledTimeAndFarLessThanUnscaled()
    {
        // 2000-token prefill (8 + 100 ms) and 99 decode steps (8.1 ms each): 909.9 ms unscaled, 91 ms at speedup 10.
        await using var engine = new MockerEngine(MockerOptions.Default with { SpeedupRatio = 10, VocabSize = 512 });
        double modelled = (8 + 0.05 * 2000 + 99 * 8.1) / 10;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (tokens, _, _) = await CollectAsync(engine, new EngineRequest("r", [.. Enumerable.Range(0, 2000).Select(i => i % 512)], Tokens(100)));
        TimeSpan elapsed = clock.Elapsed;
        Assert.Equal(100, tokens.Count);
        Assert.True(elapsed.TotalMilliseconds >= modelled * 0.95, $"took {elapsed.TotalMilliseconds} ms, the model says {modelled} ms");

        // The speedup is applied to what the clock is asked to wait (a tenth of the unscaled 909.9 ms). Not bounded by the
        // wall clock: a run on a machine that other work starves (a build beside the suite took this to 885 ms) is late, not wrong.
        Assert.InRange(engine.PacedTime.TotalMilliseconds, modelled - 0.01, modelled + 0.01);
    }
}

using Dynamo.Llm.Engines;
using Dynamo.Mocker;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Mocker;

/// <summary>What only the echo engine does: its tokens, log-probabilities and token delay. What every engine does is in <see cref="EchoEngineContractTests"/>.</summary>
public sealed class EchoEngineTests
{
    private static async Task<List<EngineOutput>> RunAsync(IEngine engine, EngineRequest request, CancellationToken cancellationToken = default)
    {
        var list = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(request, cancellationToken))
        {
            list.Add(o);
        }

        return list;
    }

    [Fact]
    public async Task Submit_MaxTokensAbovePrompt_EchoesEachTokenOncePerStepThenStop()
    {
        await using var engine = new EchoEngine();
        List<EngineOutput> outputs = await RunAsync(engine, new EngineRequest("a", [5, 6, 7], SamplingParams.Default with { MaxTokens = 10 }));

        Assert.Equal([5, 6, 7], outputs.SelectMany(o => o.TokenIds));
        Assert.All(outputs, o => Assert.Single(o.TokenIds));
        Assert.Equal(FinishReason.Stop, outputs[^1].FinishReason);
        Assert.All(outputs.Take(2), o => Assert.Null(o.FinishReason));
        await EngineContractTests.WaitUntilAsync(() => engine.Stats.RequestsFinished == 1);
        Assert.Equal(0, engine.Stats.RunningRequests);
        Assert.Equal(3, engine.Stats.GeneratedTokens);
        Assert.Equal(3, engine.Stats.Steps);
    }

    [Fact]
    public async Task Submit_MaxTokensBelowPrompt_FinishLength()
    {
        await using var engine = new EchoEngine();
        List<EngineOutput> outputs = await RunAsync(engine, new EngineRequest("a", [5, 6, 7], SamplingParams.Default with { MaxTokens = 2, Logprobs = true, TopLogprobs = 2 }));

        Assert.Equal([5, 6], outputs.SelectMany(o => o.TokenIds));
        Assert.Equal(FinishReason.Length, outputs[^1].FinishReason);
        Assert.Equal([0f], outputs[0].Logprobs!);
        Assert.Equal([new TokenLogprob(5, 0), new TokenLogprob(6, -100)], outputs[0].TopLogprobs![0]);
    }

    [Fact]
    public async Task Cancel_WhileDelayed_EndsWithCancelledAndRunningBackToZero()
    {
        await using var engine = new EchoEngine(EchoEngineOptions.Default with { TokenDelay = TimeSpan.FromMilliseconds(50) });
        Task<List<EngineOutput>> run = RunAsync(engine, new EngineRequest("a", [.. Enumerable.Range(1, 100)], SamplingParams.Default with { MaxTokens = 100 }));
        await EngineContractTests.WaitUntilAsync(() => engine.Stats.GeneratedTokens >= 2);

        Assert.Equal(1, engine.Stats.RunningRequests);
        Assert.True(engine.Cancel("a"));
        List<EngineOutput> outputs = await run;
        Assert.Equal(FinishReason.Cancelled, outputs[^1].FinishReason);
        Assert.True(outputs.Count < 50, $"{outputs.Count} outputs: a step waits the token delay");
        await EngineContractTests.WaitUntilAsync(() => engine.Stats.RequestsFinished == 1);
        Assert.Equal(0, engine.Stats.RunningRequests);
        Assert.False(engine.Cancel("a"));
    }
}

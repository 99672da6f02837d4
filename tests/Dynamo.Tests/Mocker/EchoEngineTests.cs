using Dynamo.Llm.Engines;
using Dynamo.Mocker;

namespace Dynamo.Tests.Mocker;

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
        Assert.Equal(0, engine.Stats.RunningRequests);
        Assert.Equal(3, engine.Stats.GeneratedTokens);
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
        while (engine.Stats.GeneratedTokens < 2)
        {
            await Task.Delay(10);
        }

        Assert.Equal(1, engine.Stats.RunningRequests);
        Assert.True(engine.Cancel("a"));
        List<EngineOutput> outputs = await run;
        Assert.Equal(FinishReason.Cancelled, outputs[^1].FinishReason);
        Assert.Equal(0, engine.Stats.RunningRequests);
        Assert.False(engine.Cancel("a"));
    }

    [Fact]
    public async Task Submit_TokenCancelled_StopsAndFreesTheRequest()
    {
        await using var engine = new EchoEngine(EchoEngineOptions.Default with { TokenDelay = TimeSpan.FromMilliseconds(20) });
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        List<EngineOutput> outputs = await RunAsync(engine, new EngineRequest("a", [.. Enumerable.Range(1, 100)], SamplingParams.Default with { MaxTokens = 100 }), cancel.Token);

        Assert.True(outputs.Count < 50);
        Assert.Equal(0, engine.Stats.RunningRequests);
    }

    [Fact]
    public async Task Submit_BadRequests_ThrowArgumentException()
    {
        await using var engine = new EchoEngine(EchoEngineOptions.Default with { ContextLength = 4, VocabSize = 10 });
        Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("a", [], SamplingParams.Default)));
        Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("a", [1, 2, 3, 4, 5], SamplingParams.Default)));
        Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("a", [10], SamplingParams.Default)));
        Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("a", [1], SamplingParams.Default with { Temperature = 3 })));
    }
}

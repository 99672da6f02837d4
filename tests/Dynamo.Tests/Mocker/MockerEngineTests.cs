using System.Text;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Mocker;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Mocker;

/// <summary>
/// What only the mocker does: deterministic synthetic tokens and log-probabilities, exact step times on a
/// manual clock, and the same KV events as the real engine for the same
/// requests (the speedup ratio on the real clock: <see cref="MockerEngineRealClockTests"/>). What every engine does is in <see cref="MockerEngineContractTests"/>.
/// </summary>
public sealed class MockerEngineTests
{
    /// <summary>Fast enough that waits round to nothing; the cost model is checked on a manual clock.</summary>
    private static readonly MockerOptions Fast = MockerOptions.Default with { SpeedupRatio = 1000, NumGpuBlocks = 1024, VocabSize = 512 };

    private static SamplingParams Tokens(int maxTokens) => SamplingParams.Greedy with { MaxTokens = maxTokens, IgnoreEos = true };

    private static Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> CollectAsync(IEngine engine, EngineRequest request) =>
        EngineContractTests.CollectAsync(engine, request);

    [Fact]
    public async Task Submit_SameRequest_SameSyntheticTokensOnAnyMockerWithTheSameSeed()
    {
        await using var engine = new MockerEngine(Fast);
        Assert.Equal("mocker", engine.Name);
        int[] prompt = [.. Enumerable.Range(1, 20)];
        var (tokens, _, _) = await CollectAsync(engine, new EngineRequest("a", prompt, Tokens(12)));
        Assert.Equal(12, tokens.Count);

        // Deterministic: the same request gives the same tokens, on this engine or another with the same seed.
        Assert.Equal(tokens, (await CollectAsync(engine, new EngineRequest("b", prompt, Tokens(12)))).Tokens);
        await using var twin = new MockerEngine(Fast);
        Assert.Equal(tokens, (await CollectAsync(twin, new EngineRequest("c", prompt, Tokens(12)))).Tokens);
        await using var other = new MockerEngine(Fast with { Seed = 7 });
        Assert.NotEqual(tokens, (await CollectAsync(other, new EngineRequest("d", prompt, Tokens(12)))).Tokens);
    }

    [Fact]
    public async Task Submit_Logprobs_AreSyntheticAndTopListsHaveTheAskedLength()
    {
        await using var engine = new MockerEngine(Fast);
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("lp", [1, 2, 3], Tokens(3) with { Logprobs = true, TopLogprobs = 3 })))
        {
            outputs.Add(o);
        }

        Assert.Equal(3, outputs.Count);
        Assert.All(outputs, o =>
        {
            Assert.Equal(MathF.Log(0.5f), Assert.Single(o.Logprobs!));
            IReadOnlyList<TokenLogprob> top = Assert.Single(o.TopLogprobs!);
            Assert.Equal(3, top.Count);
            Assert.Equal(o.TokenIds[0], top[0].TokenId);
            Assert.True(top[0].Logprob > top[1].Logprob && top[1].Logprob > top[2].Logprob);
        });
    }

    [Fact]
    public async Task Submit_OneRequestOnManualClock_TtftIsThePrefillStepAndTotalIsTheSumOfSteps()
    {
        var clock = new ManualTimeProvider();
        var options = Fast with { SpeedupRatio = 2, StepMs = 10, PrefillMsPerToken = 0.5, DecodeMsPerSequence = 1 };
        await using var engine = new MockerEngine(options, clock);
        await using IAsyncEnumerator<EngineOutput> outputs = engine.SubmitAsync(new EngineRequest("t", [.. Enumerable.Range(1, 100)], Tokens(4))).GetAsyncEnumerator();

        // Step 0 prefills 100 tokens: (10 + 0.5 x 100) / 2 = 30 ms; nothing comes out before.
        ValueTask<bool> first = outputs.MoveNextAsync();
        Assert.Equal(TimeSpan.FromMilliseconds(30), await clock.NextDueAsync());
        Assert.False(first.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(30));
        Assert.True(await first);
        Assert.Equal(TimeSpan.FromMilliseconds(30), clock.Elapsed);

        // Each decode step of one sequence: (10 + 1) / 2 = 5.5 ms.
        for (int i = 1; i < 4; i++)
        {
            ValueTask<bool> next = outputs.MoveNextAsync();
            Assert.Equal(TimeSpan.FromMilliseconds(5.5), await clock.NextDueAsync());
            Assert.False(next.IsCompleted);
            clock.Advance(TimeSpan.FromMilliseconds(5.5));
            Assert.True(await next);
        }

        Assert.Equal(FinishReason.Length, outputs.Current.FinishReason);
        Assert.Equal(TimeSpan.FromMilliseconds(30 + 3 * 5.5), clock.Elapsed);
        Assert.False(await outputs.MoveNextAsync());
    }

    [Fact]
    public async Task Submit_ChunkedPrefillAndBatchedDecodeOnManualClock_EachStepCostsItsChunksAndSequences()
    {
        var clock = new ManualTimeProvider();
        var options = Fast with { SpeedupRatio = 1, StepMs = 10, PrefillMsPerToken = 0.5, AttentionMsPerTokenPair = 0.001, DecodeMsPerSequence = 1, MaxNumBatchedTokens = 64 };
        await using var engine = new MockerEngine(options, clock);
        Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> a = CollectAsync(engine, new EngineRequest("a", [.. Enumerable.Range(1, 100)], Tokens(2)));

        // 100 prompt tokens in chunks of 64 and 36: tokens x 0.5 ms, plus (query, key) pairs x 0.001 ms.
        double chunk1 = 10 + 64 * 0.5 + (64 * 65 / 2) * 0.001;
        double chunk2 = 10 + 36 * 0.5 + (36 * 64 + 36 * 37 / 2) * 0.001;
        Assert.Equal(chunk1, (await clock.NextDueAsync()).TotalMilliseconds, 6);
        clock.Advance(await clock.NextDueAsync());
        Assert.Equal(chunk2, (await clock.NextDueAsync()).TotalMilliseconds, 6);

        // A second request arrives during the second chunk: the next step decodes a and prefills b's 10 tokens.
        Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> b = CollectAsync(engine, new EngineRequest("b", [.. Enumerable.Range(200, 10)], Tokens(2)));
        clock.Advance(await clock.NextDueAsync());
        Assert.Equal(10 + 1 + 10 * 0.5 + 55 * 0.001, (await clock.NextDueAsync()).TotalMilliseconds, 6);
        clock.Advance(await clock.NextDueAsync());

        // Then b decodes alone (a ended with its second token).
        Assert.Equal(11, (await clock.NextDueAsync()).TotalMilliseconds, 6);
        clock.Advance(await clock.NextDueAsync());
        await Task.WhenAll(a, b);
        Assert.Equal(chunk1 + chunk2 + (11 + 5.055) + 11, clock.Elapsed.TotalMilliseconds, 3);
        await engine.Core.InspectAsync(_ => 0);
        Assert.Equal(4, engine.Stats.Steps);
    }

    [Fact]
    public async Task Submit_MaxStepMsOnManualClock_LonePromptRunsInOneStepThenDecodes()
    {
        var clock = new ManualTimeProvider();
        var options = Fast with { SpeedupRatio = 1, StepMs = 10, PrefillMsPerToken = 0.5, DecodeMsPerSequence = 1, MaxNumBatchedTokens = 512, MaxStepMs = 40 };
        await using var engine = new MockerEngine(options, clock);
        Assert.Equal(40, engine.Core.Scheduler.Options.MaxStepMs);
        Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> a = CollectAsync(engine, new EngineRequest("a", [.. Enumerable.Range(1, 100)], Tokens(2)));

        // 100 prompt tokens take 10 + 50 = 60 ms in one step, over the 40 ms budget: nothing decodes beside them, so nothing
        // is protected by cutting them (cut prefill beside decodes: SchedulerTests). Then a decode.
        foreach (double expected in new[] { 60, 11 })
        {
            TimeSpan due = await clock.NextDueAsync();
            Assert.Equal(expected, due.TotalMilliseconds, 6);
            clock.Advance(due);
        }

        Assert.Equal(2, (await a).Tokens.Count);
        await engine.Core.InspectAsync(_ => 0);
        Assert.Equal(2, engine.Stats.Steps);
        Assert.Equal(40, engine.Stats.MaxStepMs);
        Assert.Equal(0.9 * 60 + 0.1 * 11, engine.Stats.StepMs, 9);
    }

    public static TheoryData<int, int, int, int, int, bool> Pools => new()
    {
        // block size, blocks, max batched tokens, max seqs, requests, preempts
        { 8, 40, 48, 32, 16, true },
        { 4, 120, 64, 4, 12, false },
        { 16, 200, 512, 64, 10, false },
    };

    /// <summary>
    /// The same requests, arriving the same way, on the real engine (tiny synthesized model) and on the mocker
    /// replaying the real engine's tokens: the same KV event stream, event by event, and the same scheduling.
    /// </summary>
    [Theory]
    [MemberData(nameof(Pools))]
    public async Task KvEvents_SameRequestsAsTheRealEngine_SameEventSequence(int blockSize, int blocks, int maxBatched, int maxSeqs, int count, bool preempts)
    {
        string path = TestModels.Tiny.Value;
        ModelConfig config = ModelLoader.Load(path).Config;
        var random = new Random(blockSize * 1000 + blocks);
        int[] shared = [.. Enumerable.Range(0, 40).Select(_ => random.Next(3, 500))];
        var requests = new List<EngineRequest>();
        for (int i = 0; i < count; i++)
        {
            int[] tail = [.. Enumerable.Range(0, random.Next(1, 60)).Select(_ => random.Next(3, 500))];
            requests.Add(new EngineRequest($"r{i}", i % 3 == 0 ? [.. shared, .. tail] : tail, Tokens(random.Next(1, 24))));
        }

        var engineOptions = EngineOptions.Default with
        {
            BlockSize = blockSize,
            KvCacheMemory = PagedKvCache.BytesPerBlock(config, blockSize, EngineOptions.Default.KvCacheDtype) * blocks,
            MaxNumBatchedTokens = maxBatched,
            MaxNumSeqs = maxSeqs,
            MaxStepMs = 0,
            WorkerId = 3,
            EventHistory = 100_000,
        };
        await using InferenceEngine real = InferenceEngineTests.Create(path, engineOptions);
        Script expected = await RunAsync(real, hook => real.Core.BeforeStep = hook, real.Core.InspectAsync, requests);

        var mockerOptions = MockerOptions.Default with
        {
            BlockSize = blockSize,
            NumGpuBlocks = blocks,
            MaxNumBatchedTokens = maxBatched,
            MaxNumSeqs = maxSeqs,
            ContextLength = real.ContextLength,
            VocabSize = config.VocabSize,
            WorkerId = 3,
            EventHistory = 100_000,
            SpeedupRatio = 1000,
        };
        await using var mocker = new MockerEngine(mockerOptions) { TokenOverride = (id, index) => expected.Tokens[id][index] };
        Script actual = await RunAsync(mocker, hook => mocker.Core.BeforeStep = hook, mocker.Core.InspectAsync, requests);

        Assert.Equal(expected.Tokens, actual.Tokens);
        Assert.Equal(expected.Events.Count, actual.Events.Count);
        for (int i = 0; i < expected.Events.Count; i++)
        {
            Assert.Equal(expected.Events[i], actual.Events[i]);
        }

        Assert.Equal(expected.Cached, actual.Cached);
        Assert.Equal(expected.Stats with { KvBlocksTotal = 0, KvCacheBytes = 0, StepMs = 0 }, actual.Stats with { KvBlocksTotal = 0, KvCacheBytes = 0, StepMs = 0 });
        Assert.Equal(blocks, actual.Stats.KvBlocksTotal);
        Assert.Equal(PagedKvCache.BytesPerBlock(config, blockSize, EngineOptions.Default.KvCacheDtype) * expected.Stats.KvBlocksTotal, expected.Stats.KvCacheBytes);
        Assert.Equal(0, actual.Stats.KvCacheBytes); // the mocker stores no keys or values
        Assert.Contains(expected.Events, e => e.Contains("\"stored\"", StringComparison.Ordinal));
        Assert.Equal(preempts, expected.Stats.Preemptions > 0);
        if (blocks <= 120)
        {
            Assert.Contains(expected.Events, e => e.Contains("\"removed\"", StringComparison.Ordinal));
        }
    }

    private sealed record Script(List<string> Events, Dictionary<string, List<int>> Tokens, Dictionary<string, int> Cached, EngineStats Stats);

    /// <summary>
    /// Submits the first request, holds the engine before its first step, submits the rest (so both engines see
    /// them arrive in the same step), then lets it run.
    /// </summary>
    private static async Task<Script> RunAsync(IEngine engine, Action<Action<long>> setHook, Func<Func<KvBlockPool, int>, Task<int>> inspect, List<EngineRequest> requests)
    {
        var events = new List<string>();
        engine.KvEvents!.Published += e => events.Add(Encoding.UTF8.GetString(KvEventJson.SerializeToUtf8(e)));
        using var reached = new ManualResetEventSlim(false);
        using var gate = new ManualResetEventSlim(false);
        setHook(n =>
        {
            if (n == 0)
            {
                reached.Set();
                gate.Wait(TimeSpan.FromSeconds(30));
            }
        });
        var tasks = new List<Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)>> { CollectAsync(engine, requests[0]) };
        Assert.True(reached.Wait(TimeSpan.FromSeconds(30)));
        tasks.AddRange(requests.Skip(1).Select(r => CollectAsync(engine, r)));
        gate.Set();
        var results = await Task.WhenAll(tasks);

        // Read the stats after the engine has looked at its queue once more (the last step's snapshot is then taken).
        await inspect(_ => 0);
        EngineStats stats = engine.Stats;
        return new Script(
            events,
            requests.Zip(results).ToDictionary(p => p.First.Id, p => p.Second.Tokens),
            requests.Zip(results).ToDictionary(p => p.First.Id, p => p.Second.Last.CachedTokens),
            stats);
    }
}

using System.Text;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Mocker;
using Dynamo.Tests.Engine.Serving;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Mocker;

/// <summary>
/// The mocker behind <see cref="IEngine"/>: the real scheduler and block pool (prefix hits, KV events that
/// replay to the pool's cached set and equal the real engine's, preemption, cancellation), exact step times
/// on a manual clock, and the real engine's submit-time checks.
/// </summary>
public sealed class MockerEngineTests
{
    /// <summary>Fast enough that waits round to nothing; the cost model is checked on a manual clock.</summary>
    private static readonly MockerOptions Fast = MockerOptions.Default with { SpeedupRatio = 1000, NumGpuBlocks = 1024, VocabSize = 512 };

    private static SamplingParams Tokens(int maxTokens) => SamplingParams.Greedy with { MaxTokens = maxTokens, IgnoreEos = true };

    private static Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> CollectAsync(IEngine engine, EngineRequest request, CancellationToken cancellationToken = default) =>
        InferenceEngineTests.CollectAsync(engine, request, cancellationToken);

    private static async Task WaitForAsync(Func<bool> condition)
    {
        for (int i = 0; i < 1000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition(), "timed out waiting");
    }

    [Fact]
    public async Task Submit_OneRequest_GeneratesMaxTokensSyntheticTokensAndEndsWithLength()
    {
        await using var engine = new MockerEngine(Fast);
        int[] prompt = [.. Enumerable.Range(1, 20)];
        var (tokens, logprobs, last) = await CollectAsync(engine, new EngineRequest("a", prompt, Tokens(12)));
        Assert.Equal(12, tokens.Count);
        Assert.All(tokens, t => Assert.InRange(t, 0, 511));
        Assert.Empty(logprobs);
        Assert.Equal(FinishReason.Length, last.FinishReason);
        Assert.Equal(20, last.PromptTokens);
        Assert.Equal("mocker", engine.Name);

        // Deterministic: the same request gives the same tokens, on this engine or another with the same seed.
        Assert.Equal(tokens, (await CollectAsync(engine, new EngineRequest("b", prompt, Tokens(12)))).Tokens);
        await using var twin = new MockerEngine(Fast);
        Assert.Equal(tokens, (await CollectAsync(twin, new EngineRequest("c", prompt, Tokens(12)))).Tokens);
        await using var other = new MockerEngine(Fast with { Seed = 7 });
        Assert.NotEqual(tokens, (await CollectAsync(other, new EngineRequest("d", prompt, Tokens(12)))).Tokens);
    }

    [Fact]
    public async Task Submit_StopTokenIdGenerated_EndsWithStop()
    {
        await using var engine = new MockerEngine(Fast);
        int[] prompt = [3, 1, 4, 1, 5];
        var reference = await CollectAsync(engine, new EngineRequest("ref", prompt, Tokens(10)));
        var stopped = await CollectAsync(engine, new EngineRequest("stop", prompt, Tokens(10) with { StopTokenIds = [reference.Tokens[4]] }));
        int firstStop = reference.Tokens.IndexOf(reference.Tokens[4]);
        Assert.Equal(reference.Tokens[..(firstStop + 1)], stopped.Tokens);
        Assert.Equal(FinishReason.Stop, stopped.Last.FinishReason);
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
    public async Task Submit_SharedPrefix_SecondRequestHitsTheSharedFullBlocksAndEventsReplayToThePool()
    {
        await using var engine = new MockerEngine(Fast with { WorkerId = 9 });
        var replay = new KvCachedSet();
        engine.KvEvents!.Published += e => replay.Apply(e);
        int[] first = [.. Enumerable.Range(10, 70)];
        int[] second = [.. first[..50], .. Enumerable.Range(300, 25)];
        var a = await CollectAsync(engine, new EngineRequest("a", first, Tokens(8)));
        var b = await CollectAsync(engine, new EngineRequest("b", second, Tokens(8)));
        Assert.Equal(0, a.Last.CachedTokens);
        Assert.Equal(48, b.Last.CachedTokens);
        Assert.Equal(48, engine.Stats.PrefixHitTokens);
        Assert.Equal(70 + 75, engine.Stats.PrefixQueryTokens);

        var (cached, dump) = await engine.InspectAsync(pool =>
        {
            pool.CheckInvariants();
            return (pool.CachedHashes.ToHashSet(), pool.Dump(9));
        });
        Assert.Equal(cached, replay.BlockHashes.ToHashSet());
        var fromDump = new KvCachedSet();
        fromDump.Load(dump);
        Assert.Equal(cached, fromDump.BlockHashes.ToHashSet());

        // The router's definition: chained hashes of every full block of prompt and computed output tokens.
        int[] all = [.. first, .. a.Tokens];
        int[] allB = [.. second, .. b.Tokens];
        var expected = BlockHasher.SequenceHashes(all.AsSpan(0, all.Length - 1), 16).Concat(BlockHasher.SequenceHashes(allB.AsSpan(0, allB.Length - 1), 16)).ToHashSet();
        Assert.Equal(expected, cached);
        Assert.True(engine.KvEvents.TryGetSince(0, out IReadOnlyList<KvEvent> events));
        Assert.All(events, e => Assert.Equal(9, e.WorkerId));
    }

    [Fact]
    public async Task Submit_PrefixCachingOff_NoEventsNoHits()
    {
        await using var engine = new MockerEngine(Fast with { PrefixCaching = false });
        int[] prompt = [.. Enumerable.Range(10, 40)];
        await CollectAsync(engine, new EngineRequest("a", prompt, Tokens(4)));
        var again = await CollectAsync(engine, new EngineRequest("b", prompt, Tokens(4)));
        Assert.Null(engine.KvEvents);
        Assert.Equal(0, again.Last.CachedTokens);
        Assert.Equal(0, engine.Stats.KvBlocksCached);
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
        await engine.InspectAsync(_ => 0);
        Assert.Equal(4, engine.Stats.Steps);
    }

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
        Assert.True(elapsed.TotalMilliseconds < modelled * 10 * 0.9, $"took {elapsed.TotalMilliseconds} ms: the speedup ratio was not applied");
    }

    [Fact]
    public async Task Submit_BadRequests_AreRejectedAtSubmitLikeTheRealEngineAndOthersKeepRunning()
    {
        await using var engine = new MockerEngine(Fast with { NumGpuBlocks = 4, ContextLength = 256 });
        Task<(List<int>, List<float>, EngineOutput)> good = CollectAsync(engine, new EngineRequest("good", [1, 2, 3], Tokens(8)));
        Assert.Contains("context length is 256", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("a", new int[256], Tokens(4)))).Message);
        Assert.Contains("KV cache holds 64", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("b", new int[64], Tokens(4)))).Message);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("c", [1, 512], Tokens(4)))).Message);
        Assert.Contains("no tokens", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("d", [], Tokens(4)))).Message);
        Assert.Contains("no id", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("", [1], Tokens(4)))).Message);
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("e", [1], Tokens(4) with { Temperature = 3 }))).Message);
        Assert.Contains("max_tokens", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("f", [1], Tokens(4) with { MaxTokens = 0 }))).Message);
        Assert.Equal(8, (await good).Item1.Count);
    }

    [Fact]
    public async Task Submit_DuplicateLiveId_IsRejectedAndTheIdIsFreeAgainAfterwards()
    {
        await using var engine = new MockerEngine(Fast with { SpeedupRatio = 1 });
        IAsyncEnumerable<EngineOutput> first = engine.SubmitAsync(new EngineRequest("dup", [1, 2], Tokens(5)));
        Assert.Contains("already running", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("dup", [1, 2], Tokens(5)))).Message);
        await foreach (EngineOutput o in first)
        {
            _ = o;
        }

        Assert.Equal(5, (await CollectAsync(engine, new EngineRequest("dup", [1, 2], Tokens(5)))).Tokens.Count);
    }

    [Fact]
    public async Task Submit_SequenceReachingThePoolSize_EndsWithLength()
    {
        await using var engine = new MockerEngine(Fast with { BlockSize = 4, NumGpuBlocks = 5 });
        var (tokens, _, last) = await CollectAsync(engine, new EngineRequest("x", [1, 2, 3], Tokens(100)));
        Assert.Equal(FinishReason.Length, last.FinishReason);
        Assert.Equal(20 - 3, tokens.Count);
    }

    /// <summary>An engine (real clock, slow steps) that stops before step <paramref name="step"/> until the gate opens.</summary>
    private static (MockerEngine Engine, ManualResetEventSlim Gate) Paused(long step)
    {
        var engine = new MockerEngine(Fast);
        var gate = new ManualResetEventSlim(false);
        engine.BeforeStep = n =>
        {
            if (n == step)
            {
                gate.Wait(TimeSpan.FromSeconds(30));
            }
        };
        return (engine, gate);
    }

    [Fact]
    public async Task Cancel_RunningRequest_EndsItAndLeavesOnlyCachedBlocks()
    {
        var (engine, gate) = Paused(step: 3);
        await using MockerEngine _ = engine;
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("long", [.. Enumerable.Range(1, 40)], Tokens(200))))
        {
            outputs.Add(o);
            if (outputs.Count == 3)
            {
                Assert.True(engine.Cancel("long"));
                gate.Set();
            }
        }

        Assert.Equal(FinishReason.Cancelled, outputs[^1].FinishReason);
        Assert.Equal(5, outputs.Count);
        Assert.Equal(0, await engine.InspectAsync(pool => pool.UsedCount));
        await WaitForAsync(() => engine.Stats.RequestsFinished == 1);
        EngineStats stats = engine.Stats;
        Assert.Equal(0, stats.KvBlocksUsed);
        Assert.Equal(2, stats.KvBlocksCached);
        Assert.Equal(0, stats.RunningRequests + stats.WaitingRequests);
        Assert.False(engine.Cancel("long"));
        Assert.False(engine.Cancel("never-submitted"));
    }

    [Fact]
    public async Task Submit_TokenCancelled_FreesTheRequest()
    {
        var (engine, gate) = Paused(step: 2);
        await using MockerEngine _ = engine;
        using var cts = new CancellationTokenSource();
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("x", [5, 6], Tokens(200)), cts.Token))
        {
            outputs.Add(o);
            if (outputs.Count == 2)
            {
                await cts.CancelAsync();
                gate.Set();
            }
        }

        Assert.Equal(FinishReason.Cancelled, outputs[^1].FinishReason);
        Assert.Equal(4, outputs.Count);
        Assert.Equal(0, await engine.InspectAsync(pool => pool.UsedCount));
    }

    [Fact]
    public async Task Submit_AbandonedEnumeration_CancelsTheRequestAndFreesItsBlocks()
    {
        var (engine, gate) = Paused(step: 1);
        await using MockerEngine _ = engine;
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("y", [5, 6], Tokens(200))))
        {
            break;
        }

        gate.Set();
        await WaitForAsync(() => engine.Stats.RequestsFinished == 1);
        Assert.Equal(0, await engine.InspectAsync(pool => pool.UsedCount));
        Assert.Equal(0, engine.Stats.KvBlocksUsed);
        Assert.True(engine.Stats.GeneratedTokens < 10);
    }

    [Fact]
    public async Task Submit_SmallPool_PreemptsAndStillFinishesEveryRequest()
    {
        await using var engine = new MockerEngine(Fast with { BlockSize = 8, NumGpuBlocks = 40, MaxNumBatchedTokens = 48, MaxNumSeqs = 32 });
        var random = new Random(3);
        var results = await Task.WhenAll(Enumerable.Range(0, 24).Select(i =>
            CollectAsync(engine, new EngineRequest($"p{i}", [.. Enumerable.Range(0, random.Next(5, 60)).Select(_ => random.Next(512))], Tokens(24)))));
        Assert.All(results, r => Assert.Equal(24, r.Tokens.Count));
        await engine.InspectAsync(pool =>
        {
            pool.CheckInvariants();
            return 0;
        });
        EngineStats stats = engine.Stats;
        Assert.True(stats.Preemptions > 0, "a pool of 40 blocks of 8 must preempt 24 requests");
        Assert.Equal(0, stats.KvBlocksUsed);
        Assert.Equal(24 * 24, stats.GeneratedTokens);
        Assert.Equal(24, stats.RequestsFinished);
    }

    [Fact]
    public async Task Submit_128ConcurrentRequests_AllComplete()
    {
        await using var engine = new MockerEngine(Fast with { MaxNumSeqs = 64, MaxNumBatchedTokens = 512 });
        int[] system = [.. Enumerable.Range(1, 64)];
        var results = await Task.WhenAll(Enumerable.Range(0, 128).Select(i =>
            CollectAsync(engine, new EngineRequest($"c{i}", [.. system, .. Enumerable.Range(100 + i, 1 + i % 30)], Tokens(16 + i % 8)))));
        for (int i = 0; i < 128; i++)
        {
            Assert.Equal(16 + i % 8, results[i].Tokens.Count);
            Assert.Equal(FinishReason.Length, results[i].Last.FinishReason);
        }

        EngineStats stats = engine.Stats;
        Assert.Equal(128, stats.RequestsFinished);
        Assert.Equal(0, stats.KvBlocksUsed);
        Assert.True(stats.PrefixHitTokens >= 127 * 64 - 64 * 64, $"the shared 64-token system prompt should hit for most requests (hit {stats.PrefixHitTokens})");
    }

    [Fact]
    public async Task ExportKv_PrefillOnOneMockerDecodeOnAnother_SkipsThePrefillThere()
    {
        int[] prompt = [.. Enumerable.Range(7, 45)];
        await using var prefill = new MockerEngine(Fast);
        var first = await CollectAsync(prefill, new EngineRequest("p", prompt, Tokens(1)) { ExportKv = true });
        KvTransferPayload kv = Assert.IsType<KvTransferPayload>(first.Last.Kv);
        Assert.Equal(prompt.Length, kv.Layout.TokenCount);
        Assert.Equal(MockerEngine.MockerKvDtype, kv.Layout.Dtype);

        await using var decode = new MockerEngine(Fast with { BlockSize = 5 });
        var rest = await CollectAsync(decode, new EngineRequest("d", [.. prompt, first.Tokens[0]], Tokens(8)) { Kv = kv });
        Assert.Equal(prompt.Length, rest.Last.ImportedTokens);
        Assert.Equal(8, rest.Tokens.Count);
        Assert.Equal(0, decode.Stats.KvImportsRefused);

        // A real engine's tensors mean nothing here: refused, prefilled locally, same tokens.
        var tensors = new KvTransferPayload(new KvTransferLayout { Layers = 2, KvHeads = 2, HeadDim = 4, Dtype = "f32", BlockSize = 16, TokenCount = 45 }, new byte[2 * 2 * 45 * 2 * 4 * 4]);
        var local = await CollectAsync(decode, new EngineRequest("l", [.. prompt, first.Tokens[0]], Tokens(8)) { Kv = tensors });
        Assert.Equal(0, local.Last.ImportedTokens);
        Assert.Equal(rest.Tokens, local.Tokens);
        Assert.Equal(1, decode.Stats.KvImportsRefused);
    }

    [Fact]
    public async Task DisposeAsync_WithLiveRequests_EndsTheirStreams()
    {
        var engine = new MockerEngine(Fast with { SpeedupRatio = 1 });
        Task<(List<int>, List<float>, EngineOutput)> running = CollectAsync(engine, new EngineRequest("live", [1, 2, 3], Tokens(10_000)));
        await WaitForAsync(() => engine.Stats.GeneratedTokens > 0);
        await engine.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => running);
        Assert.Throws<ObjectDisposedException>(() => engine.SubmitAsync(new EngineRequest("late", [1], Tokens(1))));
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
            KvCacheMemory = PagedKvCache.BytesPerBlock(config, blockSize) * blocks,
            MaxNumBatchedTokens = maxBatched,
            MaxNumSeqs = maxSeqs,
            WorkerId = 3,
            EventHistory = 100_000,
        };
        await using InferenceEngine real = InferenceEngineTests.Create(path, engineOptions);
        Script expected = await RunAsync(real, hook => real.BeforeStep = hook, requests);

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
        Script actual = await RunAsync(mocker, hook => mocker.BeforeStep = hook, requests);

        Assert.Equal(expected.Tokens, actual.Tokens);
        Assert.Equal(expected.Events.Count, actual.Events.Count);
        for (int i = 0; i < expected.Events.Count; i++)
        {
            Assert.Equal(expected.Events[i], actual.Events[i]);
        }

        Assert.Equal(expected.Cached, actual.Cached);
        Assert.Equal(expected.Stats with { KvBlocksTotal = 0 }, actual.Stats with { KvBlocksTotal = 0 });
        Assert.Equal(blocks, actual.Stats.KvBlocksTotal);
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
    private static async Task<Script> RunAsync(IEngine engine, Action<Action<long>> setHook, List<EngineRequest> requests)
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
        EngineStats stats = engine switch
        {
            InferenceEngine real => await real.InspectAsync(_ => 0).ContinueWith(_ => real.Stats, TaskScheduler.Default),
            MockerEngine mocker => await mocker.InspectAsync(_ => 0).ContinueWith(_ => mocker.Stats, TaskScheduler.Default),
            _ => throw new ArgumentException("unknown engine", nameof(engine)),
        };
        return new Script(
            events,
            requests.Zip(results).ToDictionary(p => p.First.Id, p => p.Second.Tokens),
            requests.Zip(results).ToDictionary(p => p.First.Id, p => p.Second.Last.CachedTokens),
            stats);
    }
}

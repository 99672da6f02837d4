using Dynamo.Engine.Inference;
using Dynamo.Engine.Models;
using Dynamo.Engine.Models.Synth;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.Models;

namespace Dynamo.Tests.Engine.Serving;

/// <summary>
/// The serving engine on synthesized tiny models: concurrent requests give exactly the tokens (and the
/// bit-identical log-probabilities) they give alone, through chunked prefill, prefix hits and preemption.
/// </summary>
public sealed class InferenceEngineTests
{
    private static readonly Lazy<string> F32Path = new(() => Synth(GgmlType.F32));
    private static readonly Lazy<string> Q8Path = new(() => Synth(GgmlType.Q8_0));

    private static string Synth(GgmlType type)
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-engine-tests", Guid.NewGuid().ToString("N"), $"tiny-{type}.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path, Type = type });
        return path;
    }

    internal static InferenceEngine Create(string path, EngineOptions options) =>
        new(new Transformer(ModelLoader.Load(path), maxBatch: 64), [], options);

    private static readonly EngineOptions Roomy = EngineOptions.Default with { KvCacheMemory = 64L << 20 };

    /// <summary>Prompts of mixed lengths over a small alphabet; every third shares a 40-token prefix.</summary>
    private static List<int[]> Prompts(int count, int seed)
    {
        var random = new Random(seed);
        int[] shared = [.. Enumerable.Range(0, 40).Select(_ => random.Next(3, 500))];
        var prompts = new List<int[]>();
        for (int i = 0; i < count; i++)
        {
            int[] tail = [.. Enumerable.Range(0, random.Next(1, 90)).Select(_ => random.Next(3, 500))];
            prompts.Add(i % 3 == 0 ? [.. shared, .. tail] : tail);
        }

        return prompts;
    }

    private static SamplingParams Greedy(int maxTokens) => SamplingParams.Greedy with { MaxTokens = maxTokens, Logprobs = true, IgnoreEos = true };

    internal static async Task<(List<int> Tokens, List<float> Logprobs, EngineOutput Last)> CollectAsync(IEngine engine, EngineRequest request, CancellationToken cancellationToken = default)
    {
        var tokens = new List<int>();
        var logprobs = new List<float>();
        EngineOutput? last = null;
        await foreach (EngineOutput o in engine.SubmitAsync(request, cancellationToken))
        {
            tokens.AddRange(o.TokenIds);
            logprobs.AddRange(o.Logprobs ?? []);
            last = o;
        }

        return (tokens, logprobs, last ?? throw new InvalidOperationException("empty stream"));
    }

    private static async Task<List<(List<int> Tokens, List<float> Logprobs)>> AloneAsync(string path, List<int[]> prompts, int maxTokens)
    {
        var results = new List<(List<int>, List<float>)>();
        await using InferenceEngine engine = Create(path, Roomy with { PrefixCaching = false });
        for (int i = 0; i < prompts.Count; i++)
        {
            var (tokens, logprobs, _) = await CollectAsync(engine, new EngineRequest($"alone{i}", prompts[i], Greedy(maxTokens)));
            results.Add((tokens, logprobs));
        }

        return results;
    }

    public static TheoryData<int, string> Concurrency => new()
    {
        { 1, "f32" }, { 2, "f32" }, { 5, "f32" }, { 16, "f32" }, { 64, "f32" },
        { 1, "q8_0" }, { 7, "q8_0" }, { 64, "q8_0" },
    };

    [Theory]
    [MemberData(nameof(Concurrency))]
    public async Task Submit_ConcurrentGreedyRequests_EachGivesExactlyWhatItGivesAlone(int n, string type)
    {
        string path = type == "f32" ? F32Path.Value : Q8Path.Value;
        List<int[]> prompts = Prompts(n, seed: n);
        var alone = await AloneAsync(path, prompts, maxTokens: 24);

        // Small steps (chunked prefill, mixed batches) and a KV pool small enough to force preemption when many run.
        long perBlock = Dynamo.Engine.KvCache.PagedKvCache.BytesPerBlock(ModelLoader.Load(path).Config, 8);
        var options = EngineOptions.Default with { BlockSize = 8, MaxNumBatchedTokens = 48, MaxNumSeqs = 32, KvCacheMemory = perBlock * 40 };
        await using InferenceEngine engine = Create(path, options);
        var together = await Task.WhenAll(prompts.Select((p, i) => CollectAsync(engine, new EngineRequest($"r{i}", p, Greedy(24)))));
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(alone[i].Tokens, together[i].Tokens);
            Assert.Equal(alone[i].Logprobs.Select(BitConverter.SingleToInt32Bits), together[i].Logprobs.Select(BitConverter.SingleToInt32Bits));
        }

        EngineStats stats = engine.Stats;
        Assert.Equal(n * 24, stats.GeneratedTokens);
        Assert.Equal(0, stats.RunningRequests + stats.WaitingRequests);
        Assert.Equal(0, stats.KvBlocksUsed);
        if (n >= 16)
        {
            Assert.True(stats.Preemptions > 0, $"expected preemptions with {n} requests on 40 blocks");
        }

        await engine.InspectAsync(pool =>
        {
            pool.CheckInvariants();
            return 0;
        });
    }

    [Fact]
    public async Task Submit_SharedPrefix_SecondRequestHitsTheCacheAndGivesTheSameTokens()
    {
        int[] prompt = [.. Enumerable.Range(10, 70)];
        await using InferenceEngine engine = Create(F32Path.Value, Roomy);
        var first = await CollectAsync(engine, new EngineRequest("a", prompt, Greedy(16)));
        long promptBefore = engine.Stats.PrefixHitTokens;
        var second = await CollectAsync(engine, new EngineRequest("b", prompt, Greedy(16)));
        Assert.Equal(0, first.Last.CachedTokens);
        Assert.Equal(64, second.Last.CachedTokens);
        Assert.Equal(64, engine.Stats.PrefixHitTokens - promptBefore);
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.Equal(first.Logprobs, second.Logprobs);
        Assert.True(engine.Stats.Steps > 0);
    }

    [Fact]
    public async Task KvEvents_AfterRequests_ReplayEqualsTheCachedSetAndHashesMatchTheRouterDefinition()
    {
        int[] prompt = [.. Enumerable.Range(1, 40)];
        await using InferenceEngine engine = Create(F32Path.Value, Roomy with { WorkerId = 5 });
        var replay = new KvCachedSet();
        engine.KvEvents!.Published += e => replay.Apply(e);
        var result = await CollectAsync(engine, new EngineRequest("a", prompt, Greedy(10)));
        var cached = await engine.InspectAsync(pool => pool.CachedHashes.ToHashSet());
        Assert.Equal(cached, replay.BlockHashes.ToHashSet());

        // The router computes the same hashes from token ids alone: prompt and output tokens, full blocks.
        int[] all = [.. prompt, .. result.Tokens];
        ulong[] expected = BlockHasher.SequenceHashes(all.AsSpan(0, all.Length - 1), 16);
        Assert.Equal(expected.ToHashSet(), cached);
        Assert.True(engine.KvEvents.TryGetSince(0, out IReadOnlyList<KvEvent> events));
        Assert.All(events, e => Assert.Equal(5, e.WorkerId));
    }

    /// <summary>An engine that stops before step <paramref name="step"/> until the returned gate opens.</summary>
    private static (InferenceEngine Engine, ManualResetEventSlim Gate) Paused(long step)
    {
        InferenceEngine engine = Create(F32Path.Value, Roomy);
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
    public async Task Cancel_RunningRequest_EndsItAndFreesItsBlocksAtOnce()
    {
        var (engine, gate) = Paused(step: 3);
        await using InferenceEngine _ = engine;
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("long", [1, 2, 3], Greedy(200))))
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
        Assert.False(engine.Cancel("long"));
        Assert.False(engine.Cancel("never-submitted"));
    }

    [Fact]
    public async Task Submit_TokenCancelled_FreesTheRequest()
    {
        var (engine, gate) = Paused(step: 2);
        await using InferenceEngine _ = engine;
        using var cts = new CancellationTokenSource();
        var outputs = new List<EngineOutput>();
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("x", [5, 6], Greedy(200)), cts.Token))
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
    public async Task Submit_AbandonedEnumeration_CancelsTheRequest()
    {
        var (engine, gate) = Paused(step: 1);
        await using InferenceEngine _ = engine;
        await foreach (EngineOutput o in engine.SubmitAsync(new EngineRequest("y", [5, 6], Greedy(200))))
        {
            break;
        }

        gate.Set();
        for (int i = 0; i < 500 && engine.Stats.RequestsFinished == 0; i++)
        {
            await Task.Delay(10);
        }

        Assert.Equal(0, await engine.InspectAsync(pool => pool.UsedCount));
        Assert.Equal(1, engine.Stats.RequestsFinished);
        Assert.True(engine.Stats.GeneratedTokens < 10);
    }

    [Fact]
    public async Task Submit_BadRequests_AreRejectedAtSubmitAndOthersKeepRunning()
    {
        long perBlock = Dynamo.Engine.KvCache.PagedKvCache.BytesPerBlock(ModelLoader.Load(F32Path.Value).Config, 16);
        await using InferenceEngine engine = Create(F32Path.Value, EngineOptions.Default with { KvCacheMemory = perBlock * 4 });
        Task<(List<int>, List<float>, EngineOutput)> good = CollectAsync(engine, new EngineRequest("good", [1, 2, 3], Greedy(8)));
        var tooLongForContext = Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("a", new int[256], Greedy(4))));
        Assert.Contains("context length is 256", tooLongForContext.Message);
        var tooLongForPool = Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("b", new int[64], Greedy(4))));
        Assert.Contains("KV cache holds 64", tooLongForPool.Message);
        Assert.Contains("outside the vocabulary", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("c", [1, 512], Greedy(4)))).Message);
        Assert.Contains("no tokens", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("d", [], Greedy(4)))).Message);
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("e", [1], Greedy(4) with { Temperature = 3 }))).Message);
        Assert.Equal(8, (await good).Item1.Count);
    }

    [Fact]
    public async Task Submit_DuplicateLiveId_IsRejected()
    {
        await using InferenceEngine engine = Create(F32Path.Value, Roomy);
        IAsyncEnumerable<EngineOutput> first = engine.SubmitAsync(new EngineRequest("dup", [1, 2], Greedy(50)));
        Assert.Contains("already running", Assert.Throws<ArgumentException>(() => engine.SubmitAsync(new EngineRequest("dup", [1, 2], Greedy(50)))).Message);
        await foreach (EngineOutput o in first)
        {
            _ = o;
        }
    }

    [Fact]
    public async Task Submit_SequenceReachingThePoolSize_EndsWithLength()
    {
        long perBlock = Dynamo.Engine.KvCache.PagedKvCache.BytesPerBlock(ModelLoader.Load(F32Path.Value).Config, 4);
        await using InferenceEngine engine = Create(F32Path.Value, EngineOptions.Default with { BlockSize = 4, KvCacheMemory = perBlock * 5 });
        var (tokens, _, last) = await CollectAsync(engine, new EngineRequest("x", [1, 2, 3], Greedy(100)));
        Assert.Equal(FinishReason.Length, last.FinishReason);
        Assert.Equal(20 - 3, tokens.Count);
    }

    [Fact]
    public async Task Stats_WhileRunning_CountRequestsAndBlocks()
    {
        await using InferenceEngine engine = Create(F32Path.Value, Roomy with { MaxNumSeqs = 2 });
        var tasks = Enumerable.Range(0, 4).Select(i => CollectAsync(engine, new EngineRequest($"s{i}", [1, 2, 3, i + 4], Greedy(200)))).ToList();
        EngineStats? seen = null;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (seen is null && clock.Elapsed < TimeSpan.FromSeconds(10) && !tasks.All(t => t.IsCompleted))
        {
            EngineStats s = engine.Stats;
            if (s.RunningRequests == 2 && s.WaitingRequests == 2)
            {
                seen = s;
            }

            Thread.Yield();
        }

        await Task.WhenAll(tasks);
        Assert.NotNull(seen);
        Assert.True(seen.KvBlocksUsed > 0);
        EngineStats end = engine.Stats;
        Assert.Equal(16, end.PromptTokens);
        Assert.Equal(800, end.GeneratedTokens);
        Assert.Equal(4, end.RequestsFinished);
    }

    [Fact]
    public async Task ExportKv_PrefillOnOneEngineDecodeOnAnother_SameTokensAsOneEngineAlone()
    {
        int[] prompt = [.. Enumerable.Range(7, 45)];
        await using InferenceEngine single = Create(F32Path.Value, Roomy);
        var reference = await CollectAsync(single, new EngineRequest("ref", prompt, Greedy(17)));

        await using InferenceEngine prefill = Create(F32Path.Value, Roomy);
        var first = await CollectAsync(prefill, new EngineRequest("p", prompt, Greedy(1)) { ExportKv = true });
        KvTransferPayload kv = Assert.IsType<KvTransferPayload>(first.Last.Kv);
        Assert.Equal(prompt.Length, kv.Layout.TokenCount);
        Assert.Equal(16, kv.Layout.BlockSize);

        await using InferenceEngine decode = Create(F32Path.Value, Roomy with { BlockSize = 5 });
        var rest = await CollectAsync(decode, new EngineRequest("d", [.. prompt, first.Tokens[0]], Greedy(16)) { Kv = kv });
        Assert.Equal(prompt.Length, rest.Last.ImportedTokens);
        Assert.Equal(reference.Tokens, [.. first.Tokens, .. rest.Tokens]);
        Assert.Equal(reference.Logprobs.Select(BitConverter.SingleToInt32Bits), first.Logprobs.Concat(rest.Logprobs).Select(BitConverter.SingleToInt32Bits));

        // Only the last prompt token ran on the decode engine: its prefill was skipped.
        Assert.Equal(0, decode.Stats.KvImportsRefused);
        Assert.Equal(0, decode.Stats.KvBlocksUsed);
    }

    [Fact]
    public async Task ImportKv_IncompatibleLayout_IsPrefilledLocallyWithTheSameOutput()
    {
        int[] prompt = [.. Enumerable.Range(20, 30)];
        await using InferenceEngine engine = Create(F32Path.Value, Roomy);
        var reference = await CollectAsync(engine, new EngineRequest("ref", prompt, Greedy(8)));
        var bogus = new KvTransferPayload(new KvTransferLayout { Layers = 3, KvHeads = 2, HeadDim = 16, Dtype = "f32", BlockSize = 16, TokenCount = 29 }, new byte[10]);
        var again = await CollectAsync(engine, new EngineRequest("again", prompt, Greedy(8)) { Kv = bogus });
        Assert.Equal(reference.Tokens, again.Tokens);
        Assert.Equal(0, again.Last.ImportedTokens);
        Assert.Equal(1, engine.Stats.KvImportsRefused);
    }
}

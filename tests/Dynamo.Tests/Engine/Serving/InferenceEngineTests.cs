using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Models.Synth;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.ModelFiles;
using Dynamo.Llm.Scheduling;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Engine.Serving;

/// <summary>
/// What only the built-in engine promises, on synthesized tiny models: concurrent requests give exactly the
/// tokens (and the bit-identical log-probabilities) they give alone, through chunked prefill, prefix hits,
/// preemption and a KV transfer between engines. What every engine does is in
/// <see cref="InferenceEngineContractTests"/>.
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

    private static async Task<List<(List<int> Tokens, List<float> Logprobs)>> AloneAsync(string path, List<int[]> prompts, int maxTokens, KvCacheDtype dtype)
    {
        var results = new List<(List<int>, List<float>)>();
        await using InferenceEngine engine = Create(path, Roomy with { PrefixCaching = false, KvCacheDtype = dtype });
        for (int i = 0; i < prompts.Count; i++)
        {
            var (tokens, logprobs, _) = await EngineContractTests.CollectAsync(engine, new EngineRequest($"alone{i}", prompts[i], Greedy(maxTokens)));
            results.Add((tokens, logprobs));
        }

        return results;
    }

    /// <summary>Requests, weight type, KV cache element type.</summary>
    public static TheoryData<int, string, KvCacheDtype> Concurrency => new()
    {
        { 1, "f32", KvCacheDtype.F16 }, { 2, "f32", KvCacheDtype.F16 }, { 5, "f32", KvCacheDtype.F16 }, { 16, "f32", KvCacheDtype.F16 }, { 64, "f32", KvCacheDtype.F16 },
        { 1, "q8_0", KvCacheDtype.F16 }, { 7, "q8_0", KvCacheDtype.F16 }, { 64, "q8_0", KvCacheDtype.F16 },
        { 5, "f32", KvCacheDtype.F32 }, { 64, "f32", KvCacheDtype.F32 }, { 7, "q8_0", KvCacheDtype.F32 },
    };

    [Theory]
    [MemberData(nameof(Concurrency))]
    public async Task Submit_ConcurrentGreedyRequests_EachGivesExactlyWhatItGivesAlone(int n, string type, KvCacheDtype dtype)
    {
        string path = type == "f32" ? F32Path.Value : Q8Path.Value;
        List<int[]> prompts = Prompts(n, seed: n);
        var alone = await AloneAsync(path, prompts, maxTokens: 24, dtype);

        // Small steps (chunked prefill, mixed batches) and a KV pool small enough to force preemption when many run.
        long perBlock = PagedKvCache.BytesPerBlock(ModelLoader.Load(path).Config, 8, dtype);
        // No step-time budget (it admits by measured step times): the preemption below must depend on the pool alone.
        var options = EngineOptions.Default with { BlockSize = 8, MaxNumBatchedTokens = 48, MaxNumSeqs = 32, KvCacheMemory = perBlock * 40, KvCacheDtype = dtype, MaxStepMs = 0 };
        await using InferenceEngine engine = Create(path, options);
        var together = await Task.WhenAll(prompts.Select((p, i) => EngineContractTests.CollectAsync(engine, new EngineRequest($"r{i}", p, Greedy(24)))));
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

        await engine.Core.InspectAsync(pool =>
        {
            pool.CheckInvariants();
            return 0;
        });
    }

    /// <summary>
    /// The built-in engine's KV transfer is exact: prefill on one engine, decode on another (another block size) gives
    /// the tokens and log-probability bits of one engine alone. (The transfer's bookkeeping is a contract test.)
    /// </summary>
    [Fact]
    public async Task Options_MaxStepMsAndSeed_ReachTheSchedulerAndTheStats()
    {
        await using (InferenceEngine engine = Create(F32Path.Value, EngineOptions.Default))
        {
            Assert.Equal(EngineOptions.DefaultMaxStepMs, engine.Core.Scheduler.Options.MaxStepMs);
            Assert.False(engine.Core.Scheduler.Cost.IsReady);
            await EngineContractTests.CollectAsync(engine, new EngineRequest("a", [1, 2, 3, 4, 5], SamplingParams.Greedy with { MaxTokens = 3, IgnoreEos = true }));
            await engine.Core.InspectAsync(_ => 0);
            Assert.Equal(EngineOptions.DefaultMaxStepMs, engine.Stats.MaxStepMs);
            Assert.True(engine.Stats.StepMs > 0);
            Assert.Equal(3, engine.Core.Scheduler.Cost.Observations);
        }

        var seed = new StepCost(4, 0.5, 0.25);
        await using (InferenceEngine engine = Create(F32Path.Value, EngineOptions.Default with { MaxStepMs = 0, StepCostSeed = seed }))
        {
            Assert.Equal(0, engine.Core.Scheduler.Options.MaxStepMs);
            Assert.Equal(seed, engine.Core.Scheduler.Cost.Current);
            Assert.Equal(0, engine.Stats.MaxStepMs);
        }

        await using (InferenceEngine engine = Create(F32Path.Value, EngineOptions.Default with { MaxStepMs = 80 }))
        {
            Assert.Equal(80, engine.Core.Scheduler.Options.MaxStepMs);
        }
    }

    [Theory]
    [InlineData(KvCacheDtype.F32)]
    [InlineData(KvCacheDtype.F16)]
    public async Task ExportKv_PrefillOnOneEngineDecodeOnAnother_SameTokensAsOneEngineAlone(KvCacheDtype dtype)
    {
        int[] prompt = [.. Enumerable.Range(7, 45)];
        await using InferenceEngine single = Create(F32Path.Value, Roomy with { KvCacheDtype = dtype });
        await using InferenceEngine prefill = Create(F32Path.Value, Roomy with { KvCacheDtype = dtype });
        await using InferenceEngine decode = Create(F32Path.Value, Roomy with { BlockSize = 5, KvCacheDtype = dtype });
        var reference = await EngineContractTests.CollectAsync(single, new EngineRequest("ref", prompt, Greedy(17)));
        var first = await EngineContractTests.CollectAsync(prefill, new EngineRequest("p", prompt, Greedy(1)) { ExportKv = true });
        var rest = await EngineContractTests.CollectAsync(decode, new EngineRequest("d", [.. prompt, first.Tokens[0]], Greedy(16)) { Kv = first.Last.Kv });
        Assert.Equal(prompt.Length, rest.Last.ImportedTokens);
        Assert.Equal(dtype.Name(), first.Last.Kv!.Layout.Dtype);
        Assert.Equal(reference.Tokens, [.. first.Tokens, .. rest.Tokens]);
        Assert.Equal(reference.Logprobs.Select(BitConverter.SingleToInt32Bits), first.Logprobs.Concat(rest.Logprobs).Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>
    /// A deferred import is as exact: the decode engine (another block size) reserves the blocks first, the prefill
    /// engine computes the prompt's first tokens, their KV is delivered, and the decode gives the tokens and
    /// log-probability bits of one engine alone. (The import's bookkeeping is a contract test.)
    /// </summary>
    [Fact]
    public async Task DeferredKv_PrefillOnOneEngineDeliveredToAnother_SameTokensAndLogprobsAsOneEngineAlone()
    {
        int[] prompt = [.. Enumerable.Range(7, 50)];
        await using InferenceEngine single = Create(F32Path.Value, Roomy);
        await using InferenceEngine prefill = Create(F32Path.Value, Roomy);
        await using InferenceEngine decode = Create(F32Path.Value, Roomy with { BlockSize = 5 });
        var reference = await EngineContractTests.CollectAsync(single, new EngineRequest("ref", prompt, Greedy(16)));
        var import = new DeferredKvImport(45);
        var decoding = EngineContractTests.CollectAsync(decode, new EngineRequest("d", prompt, Greedy(16)) { DeferredKv = import });
        Assert.True(await import.Reserved);
        var first = await EngineContractTests.CollectAsync(prefill, new EngineRequest("p", prompt[..45], Greedy(1)) { ExportKv = true });
        import.Deliver(first.Last.Kv!);
        var rest = await decoding;
        Assert.Equal(KvImportStatus.Imported, (await import.Completed).Status);
        Assert.Equal(45, rest.Last.ImportedTokens);
        Assert.Equal(reference.Tokens, rest.Tokens);
        Assert.Equal(reference.Logprobs.Select(BitConverter.SingleToInt32Bits), rest.Logprobs.Select(BitConverter.SingleToInt32Bits));
    }

    /// <summary>
    /// A prefill engine of the other element type: its payload (f32 into an F16 engine, f16 into an F32 one) is imported,
    /// converted, not refused, and the decode goes on from it. The result is then close to, not the bits of, one engine
    /// alone: an F16 engine's own prefill attends to rounded keys from its first layer on (KvCache/README.md).
    /// </summary>
    [Theory]
    [InlineData(KvCacheDtype.F32, KvCacheDtype.F16)]
    [InlineData(KvCacheDtype.F16, KvCacheDtype.F32)]
    public async Task ExportKv_PrefillEngineOfTheOtherDtype_ImportedConverted(KvCacheDtype prefillDtype, KvCacheDtype decodeDtype)
    {
        int[] prompt = [.. Enumerable.Range(7, 45)];
        await using InferenceEngine prefill = Create(F32Path.Value, Roomy with { KvCacheDtype = prefillDtype });
        await using InferenceEngine decode = Create(F32Path.Value, Roomy with { BlockSize = 5, KvCacheDtype = decodeDtype });
        var first = await EngineContractTests.CollectAsync(prefill, new EngineRequest("p", prompt, Greedy(1)) { ExportKv = true });
        Assert.Equal(prefillDtype.Name(), first.Last.Kv!.Layout.Dtype);

        var rest = await EngineContractTests.CollectAsync(decode, new EngineRequest("d", [.. prompt, first.Tokens[0]], Greedy(16)) { Kv = first.Last.Kv });

        Assert.Equal(prompt.Length, rest.Last.ImportedTokens);
        Assert.Equal(16, rest.Tokens.Count);
        Assert.Equal(0, decode.Stats.KvImportsRefused);
    }
}

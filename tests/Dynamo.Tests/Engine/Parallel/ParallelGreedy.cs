using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Engine.Parallel;

/// <summary>
/// The engine-level check of a split model (tensor- or pipeline-parallel): ten random prompts served greedily together,
/// in small passes (chunked prefill, mixed batches) on a 30-block pool that forces preemption, by the whole model and
/// then by the split one's leader; each request's tokens must be the same, and the group must stay whole.
/// </summary>
internal static class ParallelGreedy
{
    public static async Task AssertSameTokensAsWholeAsync(string path, int seed, Transformer leader)
    {
        var random = new Random(seed);
        int vocab;
        using (IModelWeights w = ModelLoader.Load(path))
        {
            vocab = w.Config.VocabSize;
        }

        List<int[]> prompts = [.. Enumerable.Range(0, 10).Select(i => Enumerable.Range(0, random.Next(1, 60)).Select(_ => random.Next(3, vocab)).ToArray())];
        static SamplingParams Greedy() => SamplingParams.Greedy with { MaxTokens = 20, IgnoreEos = true };
        // No step-time budget: it admits by measured step times, so on a loaded machine it could keep the batch too small to
        // preempt; admission here must depend on the pool alone.
        var options = EngineOptions.Default with { BlockSize = 8, MaxNumBatchedTokens = 32, MaxNumSeqs = 16, KvCacheMemory = 0, MaxStepMs = 0 };
        async Task<List<int>[]> RunAsync(InferenceEngine engine) =>
            [.. (await Task.WhenAll(prompts.Select((p, i) => EngineContractTests.CollectAsync(engine, new EngineRequest($"r{i}", p, Greedy()))))).Select(r => r.Tokens)];

        List<int>[] expected;
        var whole = new Transformer(ModelLoader.Load(path), 32);
        await using (var engine = new InferenceEngine(whole, [], options with { KvCacheMemory = PagedKvCache.BytesPerBlock(whole.Config, 8, options.KvCacheDtype) * 30 }))
        {
            expected = await RunAsync(engine);
        }

        await using (var engine = new InferenceEngine(leader, [], options with { KvCacheMemory = PagedKvCache.BytesPerBlock(leader.Config, 8, options.KvCacheDtype) * 30 }))
        {
            Assert.Equal(30, engine.KvBudget.Blocks);
            List<int>[] actual = await RunAsync(engine);
            for (int i = 0; i < prompts.Count; i++)
            {
                Assert.Equal(expected[i], actual[i]);
            }

            Assert.True(engine.Stats.Preemptions > 0, "expected preemptions with 10 requests on 30 blocks");
            Assert.False(engine.GroupLost.IsCompleted);
        }
    }
}

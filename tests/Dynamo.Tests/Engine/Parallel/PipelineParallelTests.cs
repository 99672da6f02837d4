using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Parallel;
using Dynamo.Llm.Parallel;
using Dynamo.Tests.Engine.Inference;

namespace Dynamo.Tests.Engine.Parallel;

/// <summary>
/// Pipeline parallelism in the forward pass: N stages (threads here, over the in-process collectives; the network
/// forms are tested in Components/Parallel and Integration/) each hold their <see cref="PipelineStageWeights"/>; rank 0
/// is driven and the others follow its plans. No sum is split or reordered (a stage runs whole layers, and a token's
/// row is computed the same way in any micro-batch), so the bound tested is exact: the logits are bit for bit those of
/// one process, and so are the greedy tokens.
/// </summary>
public sealed class PipelineParallelTests
{
    private static readonly Dictionary<string, Lazy<string>> Models = new()
    {
        ["deep4"] = new(() => Write(new RandomGgufModel { Architecture = "llama", Layers = 4, Seed = 21 })),
        ["deep5"] = new(() => Write(new RandomGgufModel { Architecture = "llama", Layers = 5, Seed = 22 })),
        ["qwen2-tied4"] = new(() => Write(new RandomGgufModel { Architecture = "qwen2", Layers = 4, QkvBias = true, Tied = true, RopeTheta = 1e6f, Seed = 23 })),
    };

    private static string Write(RandomGgufModel model) =>
        model.WriteTo(Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "dynamo-pp-tests", Guid.NewGuid().ToString("N"))).FullName);

    private static string ModelPath(string name) => Models.TryGetValue(name, out Lazy<string>? p) ? p.Value : BatchTestModels.Path(name);

    /// <summary>N stages of one model as threads: rank 0's transformer, and the followers' loops.</summary>
    private sealed class Stages : IDisposable
    {
        private readonly Transformer[] _ranks;
        private readonly ICollectiveGroup[] _groups;

        public Stages(string path, int size, int microBatches, int maxBatch = 32)
        {
            _groups = InProcessCollectives.Create(size, TimeSpan.FromSeconds(120));
            _ranks = [.. Enumerable.Range(0, size).Select(r => new Transformer(PipelineStageWeights.Create(ModelLoader.Load(path), r, size), maxBatch, _groups[r]))];
            _ranks[0].MicroBatches = microBatches;
            Followers = [.. _ranks.Skip(1).Select(t => Task.Factory.StartNew(() => t.Follow(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
        }

        public Transformer Leader => _ranks[0];

        public Transformer Rank(int rank) => _ranks[rank];

        public Task[] Followers { get; }

        public ICollectiveGroup Group(int rank) => _groups[rank];

        public void Dispose()
        {
            _ranks[0].Dispose();
            Task.WaitAll(Followers.Select(f => f.ContinueWith(_ => { }, TaskScheduler.Default)).ToArray(), TimeSpan.FromSeconds(60));
            foreach (Transformer t in _ranks.Skip(1))
            {
                t.Dispose();
            }

            foreach (ICollectiveGroup g in _groups)
            {
                g.Dispose();
            }
        }
    }

    private static float[] AllLogits(Transformer model, int[] prompt)
    {
        var cache = new SequenceKvCache(model.Config, prompt.Length);
        var logits = new float[prompt.Length * model.Config.VocabSize];
        model.Forward(prompt, 0, cache, logits, allLogits: true);
        return logits;
    }

    /// <summary>Several sequences in one batched pass each step: prefills of different lengths, then decode steps of all.</summary>
    private static float[] BatchedLogits(Transformer model, int[][] prompts, int steps)
    {
        int vocab = model.Config.VocabSize, bs = 4;
        int blocksPer = (prompts.Max(p => p.Length) + steps + bs - 1) / bs;
        var cache = new PagedKvCache(model.Config, blocksPer * prompts.Length, bs);
        int[][] tables = [.. Enumerable.Range(0, prompts.Length).Select(s => Enumerable.Range(0, blocksPer).Select(b => (b * prompts.Length) + s).ToArray())];
        var all = new List<float>();
        var logits = new float[prompts.Length * vocab];
        int[] lengths = [.. prompts.Select(p => p.Length)];
        int[] tokens = [.. prompts.SelectMany(p => p)];
        SequenceSlice[] slices = new SequenceSlice[prompts.Length];
        for (int s = 0, at = 0; s < prompts.Length; at += prompts[s].Length, s++)
        {
            slices[s] = new SequenceSlice(at, prompts[s].Length, 0, tables[s], WantLogits: true);
        }

        for (int step = 0; step <= steps; step++)
        {
            model.Forward(tokens, slices, cache, logits);
            all.AddRange(logits);
            tokens = new int[prompts.Length];
            for (int s = 0; s < prompts.Length; s++)
            {
                tokens[s] = ArgMax(logits.AsSpan(s * vocab, vocab));
                slices[s] = new SequenceSlice(s, 1, lengths[s]++, tables[s], WantLogits: true);
            }
        }

        return [.. all];
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }

    private static void AssertBitwise(float[] expected, float[] actual, string label)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{label}: value {i}: {actual[i]:R} vs {expected[i]:R}");
        }
    }

    [Theory]
    [InlineData("deep4", 2, 2)]
    [InlineData("deep4", 2, 1)]
    [InlineData("deep4", 4, 4)]
    [InlineData("deep4", 4, 7)]
    [InlineData("deep5", 2, 2)]
    [InlineData("deep5", 4, 3)]
    [InlineData("qwen2-tied4", 2, 2)]
    [InlineData("Q8_0", 2, 2)]
    public void Forward_PipelineParallel_BitwiseEqualToWholeModel(string name, int stages, int microBatches)
    {
        string path = ModelPath(name);
        using var whole = new Transformer(ModelLoader.Load(path), 32);
        int vocab = whole.Config.VocabSize;
        var random = new Random((stages * 31) + microBatches);
        int[] prompt = [.. Enumerable.Range(0, 45).Select(_ => random.Next(3, vocab))];
        int[][] batch = [.. Enumerable.Range(0, 5).Select(i => Enumerable.Range(0, 3 + (i * 7)).Select(_ => random.Next(3, vocab)).ToArray())];
        float[] expected = AllLogits(whole, prompt);
        float[] expectedBatch = BatchedLogits(whole, batch, 12);

        using var pipeline = new Stages(path, stages, microBatches);
        AssertBitwise(expected, AllLogits(pipeline.Leader, prompt), $"{name} pp {stages} x {microBatches}");
        AssertBitwise(expectedBatch, BatchedLogits(pipeline.Leader, batch, 12), $"{name} pp {stages} x {microBatches}, batched");
        Assert.All(pipeline.Followers, f => Assert.False(f.IsCompleted));
    }

    [Theory]
    [InlineData("deep4", 2)]
    [InlineData("deep5", 4)]
    public async Task Engine_PipelineParallelConcurrentGreedy_SameTokensAsWholeModel(string name, int stages)
    {
        using var pipeline = new Stages(ModelPath(name), stages, microBatches: stages);
        await ParallelGreedy.AssertSameTokensAsWholeAsync(ModelPath(name), stages, pipeline.Leader);
        await Task.WhenAll(pipeline.Followers);
    }

    [Fact]
    public void Create_StageHoldsItsLayersOnly()
    {
        string path = ModelPath("deep5");
        using var first = PipelineStageWeights.Create(ModelLoader.Load(path), 0, 2);
        using var last = PipelineStageWeights.Create(ModelLoader.Load(path), 1, 2);
        Assert.Equal((0, 3), (first.FirstLayer, first.LayerCount));
        Assert.Equal((3, 2), (last.FirstLayer, last.LayerCount));
        Assert.Equal(3, first.Config.Layers);
        Assert.Equal(2, last.Config.Layers);
        Assert.Contains("token_embd.weight", first.Tensors.Keys);
        Assert.DoesNotContain("output.weight", first.Tensors.Keys);
        Assert.DoesNotContain("token_embd.weight", last.Tensors.Keys);
        Assert.Contains("output.weight", last.Tensors.Keys);
        Assert.DoesNotContain("blk.2.attn_q.weight", last.Tensors.Keys);

        using IModelWeights whole = ModelLoader.Load(path);
        Assert.Equal(whole.Tensors["blk.3.attn_q.weight"].ByteLength, last.Tensors["blk.0.attn_q.weight"].ByteLength);
        Assert.Equal(whole.Tensors.Values.Sum(t => t.ByteLength), first.ViewBytes + last.ViewBytes);
        Assert.Equal("pp 2: layers 0-2, 3-4 of 5; dim 64, vocabulary 80", first.Layout);
        Assert.Equal(2 * 2 * 8 * 2 * 16 * sizeof(float), PagedKvCache.BytesPerBlock(last.Config, 8, KvCacheDtype.F32));
    }

    [Theory]
    [InlineData(10, 4, new[] { 3, 3, 2, 2 })]
    [InlineData(12, 2, new[] { 6, 6 })]
    [InlineData(3, 3, new[] { 1, 1, 1 })]
    public void Split_LayersNotDividing_FirstStagesTakeOneMore(int layers, int stages, int[] counts)
    {
        int next = 0;
        for (int s = 0; s < stages; s++)
        {
            (int first, int count) = PipelineStageWeights.Split(layers, stages, s);
            Assert.Equal(next, first);
            Assert.Equal(counts[s], count);
            next += count;
        }

        Assert.Equal(layers, next);
    }

    [Fact]
    public void Check_MoreStagesThanLayers_NamesTheFlag()
    {
        var e = Assert.Throws<ArgumentException>(() => PipelineStageWeights.Check(new ModelConfig { Architecture = "llama", Dim = 64, HiddenDim = 96, Layers = 2, Heads = 4, KvHeads = 2, VocabSize = 96, ContextLength = 16, HeadDim = 16 }, 3));
        Assert.Equal("--pipeline-parallel-size 3: the model has 2 layers; every stage needs at least one", e.Message);
    }

    [Fact]
    public void Follow_LeaderDisposed_FollowersReturn()
    {
        var pipeline = new Stages(ModelPath("deep4"), 4, 4);
        AllLogits(pipeline.Leader, [5, 6, 7]);
        pipeline.Dispose();
        Assert.All(pipeline.Followers, f => Assert.True(f.IsCompletedSuccessfully));
    }

    [Fact]
    public void Forward_StageLost_LeaderThrowsNamingIt()
    {
        using var pipeline = new Stages(ModelPath("deep4"), 2, 2);
        AllLogits(pipeline.Leader, [5, 6, 7]);
        pipeline.Group(1).Dispose();
        var e = Assert.Throws<CollectiveException>(() => AllLogits(pipeline.Leader, [5, 6, 7, 8]));
        Assert.Equal(1, e.Rank);
        Assert.Contains("rank 1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ExportKv_Pipeline_RefusedClearly()
    {
        using var pipeline = new Stages(ModelPath("deep4"), 2, 2);
        var cache = new PagedKvCache(pipeline.Leader.Config, 4, 8);
        var e = Assert.Throws<NotSupportedException>(() => pipeline.Leader.ExportKv(cache, [0], 3, new byte[1 << 16]));
        Assert.Contains("pipeline parallelism is not supported yet", e.Message, StringComparison.Ordinal);
    }
}

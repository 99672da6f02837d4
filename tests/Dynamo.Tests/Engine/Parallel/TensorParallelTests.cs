using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Models.Synth;
using Dynamo.Engine.Parallel;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Llm.ModelFiles;
using Dynamo.Llm.Parallel;
using Dynamo.Tests.Engine.Inference;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Engine.Parallel;

/// <summary>
/// Tensor parallelism in the forward pass: N ranks (threads here, over the in-process collectives; the process and
/// network forms are tested in Integration/) each hold their <see cref="ShardedWeights"/>, rank 0 is driven and the
/// others follow its plans. Logits stay within a float tolerance of the whole model and greedy tokens are the same.
/// </summary>
public sealed class TensorParallelTests
{
    /// <summary>
    /// The bound on |logit(TP=N) - logit(TP=1)|, relative to the largest |logit| of the row. Sharding changes only the
    /// order of float additions: each output of the attention output projection and of the down projection is the sum
    /// of N partial dot products instead of one, and the embedding and the logits are exact (a row plus zeros, columns
    /// gathered). Float32 rounding of a reordered sum of k terms differs by at most about k x 2^-24 of the sum of the
    /// terms' magnitudes; with k in the hundreds and activations near unit size, per layer that is ~1e-5 relative, and
    /// it grows over layers. 2e-4 leaves a margin of ten over what the models here show (about 1e-5).
    /// </summary>
    private const float RelativeTolerance = 2e-4f;

    /// <summary>A random F32 model whose 8 heads over 4 KV heads (and FFN, vocabulary) divide by 4.</summary>
    private static readonly Lazy<string> Wide = new(() => new RandomGgufModel { Architecture = "llama", Heads = 8, KvHeads = 4, HiddenDim = 128, VocabSize = 96, Seed = 15 }
        .WriteTo(Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "dynamo-tp-tests", Guid.NewGuid().ToString("N"))).FullName));

    /// <summary>The random model whose heads divide by 4 (other tests run it on ranks too).</summary>
    internal static string WideModel => Wide.Value;

    private static string ModelPath(string name) => name switch
    {
        "wide" => Wide.Value,
        "stories260K" => SharedData.Path("models", "stories260K", "stories260K.bin"),
        "tinystories-656k" => SharedData.Path("models", "tinystories-656k"),
        _ => BatchTestModels.Path(name),
    };

    /// <summary>N ranks of one model as threads: rank 0's transformer, and the followers' loops.</summary>
    internal sealed class Ranks : IDisposable
    {
        private readonly Transformer[] _ranks;
        private readonly ICollectiveGroup[] _groups;

        public Ranks(string path, int size, int maxBatch = 32)
        {
            _groups = InProcessCollectives.Create(size, TimeSpan.FromSeconds(120));
            _ranks = size == 1
                ? [new Transformer(ModelLoader.Load(path), maxBatch)]
                : [.. Enumerable.Range(0, size).Select(r => new Transformer(ShardedWeights.Create(ModelLoader.Load(path), r, size), maxBatch, _groups[r]))];
            Followers = [.. _ranks.Skip(1).Select(t => Task.Factory.StartNew(() => t.Follow(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
        }

        public Transformer Leader => _ranks[0];

        public Task[] Followers { get; }

        public ICollectiveGroup Group(int rank) => _groups[rank];

        /// <summary>Gives every rank <paramref name="sender"/> to push its part of a KV transfer with.</summary>
        public void SetKvSender(IKvTransferSender? sender, TimeSpan? timeout = null)
        {
            foreach (Transformer t in _ranks)
            {
                t.KvSender = sender;
                t.KvPushTimeout = timeout ?? t.KvPushTimeout;
            }
        }

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

    private static float[] AllLogits(Transformer model, int[] prompt, KvCacheDtype dtype = KvCacheDtype.F32)
    {
        var cache = new SequenceKvCache(model.Config, prompt.Length, dtype);
        var logits = new float[prompt.Length * model.Config.VocabSize];
        model.Forward(prompt, 0, cache, logits, allLogits: true);
        return logits;
    }

    private static int[] Greedy(Transformer model, int[] prompt, int steps, KvCacheDtype dtype = KvCacheDtype.F32)
    {
        var cache = new SequenceKvCache(model.Config, prompt.Length + steps, dtype);
        var logits = new float[model.Config.VocabSize];
        var output = new List<int>();
        model.Forward(prompt, 0, cache, logits);
        for (int i = 0; i < steps; i++)
        {
            int next = ArgMax(logits);
            output.Add(next);
            if (i + 1 < steps)
            {
                model.Forward([next], prompt.Length + i, cache, logits);
            }
        }

        return [.. output];
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

    private static void AssertClose(float[] expected, float[] actual, int vocab, string label)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int row = 0; row < expected.Length / vocab; row++)
        {
            ReadOnlySpan<float> e = expected.AsSpan(row * vocab, vocab), a = actual.AsSpan(row * vocab, vocab);
            float scale = 0;
            foreach (float v in e)
            {
                scale = Math.Max(scale, Math.Abs(v));
            }

            for (int i = 0; i < vocab; i++)
            {
                Assert.True(Math.Abs(e[i] - a[i]) <= RelativeTolerance * scale, $"{label}: row {row}, logit {i}: {a[i]:R} vs {e[i]:R} (scale {scale:R})");
            }
        }
    }

    private static void CheckAgainstWhole(string name, int size, KvCacheDtype dtype = KvCacheDtype.F32)
    {
        string path = ModelPath(name);
        using var whole = new Transformer(ModelLoader.Load(path), 32);
        int vocab = whole.Config.VocabSize;
        var random = new Random(size * 31 + name.Length);
        int[] prompt = [.. Enumerable.Range(0, 45).Select(_ => random.Next(3, vocab))];
        float[] expected = AllLogits(whole, prompt, dtype);
        int[] expectedTokens = Greedy(whole, prompt[..7], 40, dtype);

        using var ranks = new Ranks(path, size);
        AssertClose(expected, AllLogits(ranks.Leader, prompt, dtype), vocab, $"{name} tp {size}, {dtype} KV");
        Assert.Equal(expectedTokens, Greedy(ranks.Leader, prompt[..7], 40, dtype));
        Assert.All(ranks.Followers, f => Assert.False(f.IsCompleted));
    }

    [Theory]
    [InlineData("llama", 2)]
    [InlineData("qwen2", 2)]
    [InlineData("qwen3", 2)]
    [InlineData("Q8_0", 2)]
    [InlineData("Q4_0", 2)]
    [InlineData("wide", 2)]
    [InlineData("wide", 4)]
    public void Forward_TensorParallel_MatchesWholeModel(string name, int size) => CheckAgainstWhole(name, size);

    /// <summary>With an F16 KV cache: rank 0's plans carry the element type, each rank's cache stores its heads in it.</summary>
    [Theory]
    [InlineData("llama", 2)]
    [InlineData("wide", 4)]
    public void Forward_TensorParallelF16Kv_MatchesWholeModel(string name, int size) => CheckAgainstWhole(name, size, KvCacheDtype.F16);

    [SharedTheory]
    [InlineData("stories260K", 2)]
    [InlineData("stories260K", 4)]
    [InlineData("tinystories-656k", 2)]
    [InlineData("tinystories-656k", 4)]
    public void Forward_TensorParallelSharedModels_MatchesWholeModel(string name, int size) => CheckAgainstWhole(name, size);

    [Theory]
    [InlineData("Q8_0", 2)]
    [InlineData("wide", 4)]
    public async Task Engine_TensorParallelConcurrentGreedy_SameTokensAsWholeModel(string name, int size)
    {
        using var ranks = new Ranks(ModelPath(name), size);
        await ParallelGreedy.AssertSameTokensAsWholeAsync(ModelPath(name), size, ranks.Leader);
        await Task.WhenAll(ranks.Followers);
    }

    /// <summary>An engine on N ranks (threads); disposing it stops the followers and closes the group.</summary>
    internal sealed class TpEngine : IAsyncDisposable
    {
        private readonly Ranks _ranks;

        public TpEngine(string path, int size, EngineOptions options)
        {
            _ranks = new Ranks(path, size);
            Engine = new InferenceEngine(_ranks.Leader, [], options);
        }

        public InferenceEngine Engine { get; }

        public Ranks Ranks => _ranks;

        public async ValueTask DisposeAsync()
        {
            // The engine disposes rank 0's transformer, which stops the followers.
            await Engine.DisposeAsync();
            _ranks.Dispose();
        }
    }

    [Theory]
    [InlineData(2, 1, KvCacheDtype.F16)]
    [InlineData(1, 2, KvCacheDtype.F16)]
    [InlineData(2, 2, KvCacheDtype.F16)]
    [InlineData(4, 2, KvCacheDtype.F16)]
    [InlineData(2, 1, KvCacheDtype.F32)]
    [InlineData(2, 4, KvCacheDtype.F32)]
    public async Task KvTransfer_PrefillOnNRanksDecodeOnM_SameTokensAsOneEngine(int prefillRanks, int decodeRanks, KvCacheDtype dtype)
    {
        string path = ModelPath("wide");
        var options = EngineOptions.Default with { BlockSize = 8, KvCacheMemory = 16L << 20, KvCacheDtype = dtype };
        int[] prompt = [.. Enumerable.Range(0, 37).Select(i => 3 + (i * 13 % 90))];
        static SamplingParams Greedy(int n) => SamplingParams.Greedy with { MaxTokens = n, IgnoreEos = true };

        List<int> reference;
        await using (var single = new TpEngine(path, 1, options))
        {
            reference = (await EngineContractTests.CollectAsync(single.Engine, new EngineRequest("ref", prompt, Greedy(17)))).Tokens;
        }

        await using var prefill = new TpEngine(path, prefillRanks, options);
        await using var decode = new TpEngine(path, decodeRanks, options);
        var first = await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("p", prompt, Greedy(1)) { ExportKv = true });
        Assert.Equal(4, first.Last.Kv!.Layout.KvHeads);
        Assert.Equal(dtype.Name(), first.Last.Kv.Layout.Dtype);
        var rest = await EngineContractTests.CollectAsync(decode.Engine, new EngineRequest("d", [.. prompt, first.Tokens[0]], Greedy(16)) { Kv = first.Last.Kv });
        Assert.Equal(reference, [first.Tokens[0], .. rest.Tokens]);
        Assert.Equal(prompt.Length, rest.Last.ImportedTokens);
    }

    /// <summary>
    /// A payload of the other element type into a tensor-parallel engine: rank 0 converts it, then every rank keeps its
    /// heads; the converted keys and values are those a one-rank engine of that type imports (the same decode).
    /// </summary>
    [Theory]
    [InlineData(KvCacheDtype.F32, KvCacheDtype.F16)]
    [InlineData(KvCacheDtype.F16, KvCacheDtype.F32)]
    public async Task KvTransfer_PayloadOfTheOtherDtype_ConvertedSameTokensAsOneRankImporting(KvCacheDtype prefillDtype, KvCacheDtype decodeDtype)
    {
        string path = ModelPath("wide");
        var options = EngineOptions.Default with { BlockSize = 8, KvCacheMemory = 16L << 20 };
        int[] prompt = [.. Enumerable.Range(0, 37).Select(i => 3 + (i * 13 % 90))];
        static SamplingParams Greedy(int n) => SamplingParams.Greedy with { MaxTokens = n, IgnoreEos = true };

        await using var prefill = new TpEngine(path, 2, options with { KvCacheDtype = prefillDtype });
        var first = await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("p", prompt, Greedy(1)) { ExportKv = true });
        Assert.Equal(prefillDtype.Name(), first.Last.Kv!.Layout.Dtype);
        var request = new EngineRequest("d", [.. prompt, first.Tokens[0]], Greedy(16)) { Kv = first.Last.Kv };
        List<int> oneRank;
        await using (var single = new TpEngine(path, 1, options with { BlockSize = 4, KvCacheDtype = decodeDtype }))
        {
            oneRank = (await EngineContractTests.CollectAsync(single.Engine, request)).Tokens;
        }

        await using var decode = new TpEngine(path, 2, options with { KvCacheDtype = decodeDtype });
        var rest = await EngineContractTests.CollectAsync(decode.Engine, request);

        Assert.Equal(prompt.Length, rest.Last.ImportedTokens);
        Assert.Equal(oneRank, rest.Tokens);
    }

    /// <summary>A sender that keeps what each rank pushes (any thread), or fails the parts of the ranks it is told to.</summary>
    private sealed class RecordingSender(Func<KvTransferLayout, bool>? fails = null, Func<KvTransferLayout, bool>? stalls = null) : IKvTransferSender
    {
        private readonly System.Collections.Concurrent.ConcurrentBag<(string Address, string Id, KvTransferPayload Part)> _pushed = [];

        public IReadOnlyList<(string Address, string Id, KvTransferPayload Part)> Pushed => [.. _pushed];

        public Task<TimeSpan> PushAsync(string address, string transferId, KvTransferPayload payload, CancellationToken cancellationToken = default)
        {
            if (fails?.Invoke(payload.Layout) == true)
            {
                return Task.FromException<TimeSpan>(new InvalidOperationException($"refused heads from {payload.Layout.FirstKvHead}"));
            }

            if (stalls?.Invoke(payload.Layout) == true)
            {
                // Never acknowledged: only the push's own bound ends it.
                return Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken).ContinueWith(_ => TimeSpan.Zero, cancellationToken, TaskContinuationOptions.None, TaskScheduler.Default);
            }

            // A copy: the rank's buffer is its own.
            _pushed.Add((address, transferId, payload with { Data = payload.Data.ToArray() }));
            return Task.FromResult(TimeSpan.FromMilliseconds(1));
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task PushKv_EachRankPushesItsHeads_AssembledPartsEqualTheGatheredExport(int size)
    {
        var options = EngineOptions.Default with { BlockSize = 8, KvCacheMemory = 16L << 20 };
        int[] prompt = [.. Enumerable.Range(0, 29).Select(i => 5 + (i * 7 % 80))];
        SamplingParams one = SamplingParams.Greedy with { MaxTokens = 1, IgnoreEos = true };
        await using var prefill = new TpEngine(ModelPath("wide"), size, options);
        var sender = new RecordingSender();
        prefill.Ranks.SetKvSender(sender);

        var pushed = await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("push", prompt, one) { ExportKv = true, PushKvTo = new KvPushTarget("tcp://decode:1", "t-1") });
        KvPushResult result = pushed.Last.KvPushed!;

        // Without a target the same engine gathers every rank's heads on rank 0: the old whole export.
        prefill.Ranks.SetKvSender(null);
        var gathered = await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("gather", prompt, one) { ExportKv = true });
        KvTransferPayload whole = gathered.Last.Kv!;

        Assert.Null(result.Failure);
        Assert.Null(pushed.Last.Kv);
        Assert.Equal(size, sender.Pushed.Count);
        Assert.All(sender.Pushed, p => Assert.Equal(("tcp://decode:1", "t-1"), (p.Address, p.Id)));
        Assert.Equal(Enumerable.Range(0, size).Select(r => r * 4 / size), sender.Pushed.Select(p => p.Part.Layout.FirstKvHead).Order());
        Assert.All(sender.Pushed, p => Assert.Equal((4 / size, 4, size), (p.Part.Layout.KvHeads, p.Part.Layout.TotalKvHeads, p.Part.Layout.PartCount)));
        Assert.Equal(Enumerable.Repeat(whole.Data.Length / (long)size, size), result.PartBytes);
        Assert.Equal(whole.Layout, sender.Pushed[0].Part.Layout.Whole());
        byte[] assembled = new byte[whole.Data.Length];
        KvTransferParts.Assemble([.. sender.Pushed.Select(p => p.Part)], assembled);
        Assert.True(whole.Data.Span.SequenceEqual(assembled));
    }

    [Fact]
    public async Task PushKv_OneRanksPushFails_RankZeroReportsItNamingTheRank_EngineKeepsServing()
    {
        var options = EngineOptions.Default with { BlockSize = 8, KvCacheMemory = 16L << 20 };
        int[] prompt = [.. Enumerable.Range(0, 20).Select(i => 3 + i)];
        SamplingParams one = SamplingParams.Greedy with { MaxTokens = 1, IgnoreEos = true };
        await using var prefill = new TpEngine(ModelPath("wide"), 2, options);
        prefill.Ranks.SetKvSender(new RecordingSender(fails: l => l.FirstKvHead == 2));

        var pushed = await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("push", prompt, one) { ExportKv = true, PushKvTo = new KvPushTarget("tcp://decode:1", "t-2") });

        Assert.Equal("rank 1: refused heads from 2", pushed.Last.KvPushed!.Failure);
        var next = await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("next", prompt, one with { MaxTokens = 3 }));
        Assert.Equal(3, next.Tokens.Count);
    }

    [Fact]
    public async Task PushKv_APartNeverAcknowledged_FailsAtThePushTimeoutNamingTheRank_GroupIntact()
    {
        var options = EngineOptions.Default with { BlockSize = 8, KvCacheMemory = 16L << 20 };
        int[] prompt = [.. Enumerable.Range(0, 20).Select(i => 3 + i)];
        SamplingParams one = SamplingParams.Greedy with { MaxTokens = 1, IgnoreEos = true };
        await using var prefill = new TpEngine(ModelPath("wide"), 2, options);
        prefill.Ranks.SetKvSender(new RecordingSender(stalls: l => l.FirstKvHead == 2), TimeSpan.FromMilliseconds(200));

        var pushed = await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("push", prompt, one) { ExportKv = true, PushKvTo = new KvPushTarget("tcp://decode:1", "t-3") });

        Assert.Equal("rank 1: its part was not acknowledged within 0.2 s", pushed.Last.KvPushed!.Failure);
        Assert.Equal(3, (await EngineContractTests.CollectAsync(prefill.Engine, new EngineRequest("next", prompt, one with { MaxTokens = 3 }))).Tokens.Count);
        Assert.False(prefill.Engine.GroupLost.IsCompleted);
    }

    [Fact]
    public void Follow_LeaderDisposed_FollowersReturn()
    {
        var ranks = new Ranks(ModelPath("wide"), 4);
        AllLogits(ranks.Leader, [5, 6, 7]);
        ranks.Dispose();
        Assert.All(ranks.Followers, f => Assert.True(f.IsCompletedSuccessfully));
    }

    [Fact]
    public void Forward_FollowerLost_LeaderThrowsNamingIt()
    {
        using var ranks = new Ranks(ModelPath("wide"), 2);
        AllLogits(ranks.Leader, [5, 6, 7]);
        ranks.Group(1).Dispose();
        var e = Assert.Throws<CollectiveException>(() => AllLogits(ranks.Leader, [5, 6, 7, 8]));
        Assert.Equal(1, e.Rank);
        Assert.Contains("rank 1", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(3, "KV heads do not divide by 3")]
    [InlineData(4, "KV heads do not divide by 4")]
    public void Create_ModelDoesNotDivide_NamesWhat(int size, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => ShardedWeights.Check(new ModelConfig { Architecture = "llama", Dim = 64, HiddenDim = 96, Layers = 1, Heads = 4, KvHeads = 2, VocabSize = 96, ContextLength = 16, HeadDim = 16 }, size));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.StartsWith("--tensor-parallel-size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Forward_QuantizedColumnsInsideABlock_KeptAsF32_CloseToWholeModel()
    {
        // 8 heads of 8 over 4 ranks: each rank's output projection columns are 16 values, half a Q8_0 block of 32. Those
        // columns are kept as F32 (the file's values), so the product skips the activations' 8-bit quantization: the
        // logits stay within the bound the quantized kernels keep against the same weights in floats (3e-2 relative).
        string path = SynthModelWriter.Write(SynthModelOptions.Tiny with { Heads = 8, KvHeads = 4 }, SynthOutputOptions.Default with
        {
            OutputPath = Path.Combine(Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "dynamo-tp-tests", Guid.NewGuid().ToString("N"))).FullName, "q8.gguf"),
            Format = SynthFormat.Gguf,
            Type = GgmlType.Q8_0,
        }).Path;
        using (var shard = ShardedWeights.Create(ModelLoader.Load(path), 1, 4))
        {
            Assert.Equal(["blk.0.attn_output.weight", "blk.1.attn_output.weight"], shard.Converted.Select(c => c[..c.IndexOf(' ')]));
            Assert.Contains("(Q8_0, blocks of 32: columns 16..31 kept as F32)", shard.Converted[0], StringComparison.Ordinal);
            Assert.Equal(GgmlType.F32, shard.Tensors["blk.0.attn_output.weight"].Type);
            Assert.Equal(GgmlType.Q8_0, shard.Tensors["blk.0.ffn_down.weight"].Type);
        }

        using var whole = new Transformer(ModelLoader.Load(path), 32);
        int vocab = whole.Config.VocabSize;
        int[] prompt = [.. Enumerable.Range(0, 20).Select(i => 3 + (i * 37 % 500))];
        float[] expected = AllLogits(whole, prompt);
        using var ranks = new Ranks(path, 4);
        float[] actual = AllLogits(ranks.Leader, prompt);
        for (int row = 0; row < prompt.Length; row++)
        {
            float scale = expected.AsSpan(row * vocab, vocab).ToArray().Max(Math.Abs);
            for (int i = 0; i < vocab; i++)
            {
                Assert.True(Math.Abs(expected[row * vocab + i] - actual[row * vocab + i]) <= 3e-2f * scale, $"row {row}, logit {i}");
            }
        }
    }

    [Fact]
    public void Create_RankHoldsItsShare()
    {
        using var whole = ModelLoader.Load(ModelPath("wide"));
        long total = whole.Tensors.Values.Where(t => t.Dims.Length == 2).Sum(t => t.ByteLength);
        using var shard = ShardedWeights.Create(ModelLoader.Load(ModelPath("wide")), 1, 4);
        Assert.Equal(total / 4, shard.ViewBytes + shard.CopiedBytes);
        Assert.Equal(2, shard.Config.Heads);
        Assert.Equal(1, shard.Config.KvHeads);
        Assert.Equal(32, shard.Config.HiddenDim);
        Assert.Equal(96, shard.Config.VocabSize);
        Assert.Equal(24, shard.VocabStart);
    }
}

using Dynamo.Engine.Inference;
using Dynamo.Engine.Kernels;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;

namespace Dynamo.Tests.Engine.Inference;

/// <summary>
/// The batched forward pass (<see cref="SequenceSlice"/>s over a <see cref="PagedKvCache"/>): a sequence's logits
/// are the same bits whether it runs alone through the single-sequence API in one call, or batched with up to seven
/// others at other positions, its prompt cut into random pieces, the passes cut at <see cref="Transformer.MaxBatch"/>
/// and its positions scattered over blocks of any size; with an F32 or an F16 KV cache (<see cref="KvCacheDtype"/>).
/// </summary>
public sealed class TransformerBatchedTests
{
    /// <summary>Rows of <paramref name="prompt"/>'s logits at every position, from one single-sequence call.</summary>
    private static float[] AloneLogits(Transformer model, int[] prompt, KvCacheDtype dtype = KvCacheDtype.F32)
    {
        var cache = new SequenceKvCache(model.Config, prompt.Length, dtype);
        var logits = new float[prompt.Length * model.Config.VocabSize];
        model.Forward(prompt, 0, cache, logits, allLogits: true);
        return logits;
    }

    private static int[] RandomTokens(Random random, int count, int vocab) => [.. Enumerable.Range(0, count).Select(_ => random.Next(vocab))];

    /// <summary>
    /// Block tables of <paramref name="lengths"/>.Length sequences over a pool whose ids are handed out shuffled,
    /// each table two entries longer than needed with ids outside the pool (entries past the last position's block
    /// must not be read). Returns the pool size.
    /// </summary>
    private static int[][] BlockTables(Random random, int[] lengths, int blockSize, out int blockCount)
    {
        int[] needs = [.. lengths.Select(n => (n + blockSize - 1) / blockSize)];
        blockCount = needs.Sum() + 3;
        int[] ids = [.. Enumerable.Range(0, blockCount)];
        random.Shuffle(ids);
        var tables = new int[lengths.Length][];
        for (int s = 0, next = 0; s < lengths.Length; s++)
        {
            tables[s] = [.. ids.AsSpan(next, needs[s]), -1, int.MaxValue];
            next += needs[s];
        }

        return tables;
    }

    /// <summary>
    /// Runs <paramref name="sequenceCount"/> random prompts of 1..70 tokens to the end through batched steps (a random
    /// subset of the unfinished sequences in random order, each with a random piece: often one token, as a decode),
    /// and checks every logit row against the same position run alone.
    /// </summary>
    private static void CheckBatchedAgainstAlone(
        string modelName, int blockSize, int sequenceCount, int seed, int maxBatch = 24, int aloneMaxBatch = 128, KvCacheDtype dtype = KvCacheDtype.F32)
    {
        string path = BatchTestModels.Path(modelName);
        using var alone = new Transformer(ModelLoader.Load(path), aloneMaxBatch);
        using var batched = new Transformer(ModelLoader.Load(path), maxBatch);
        int vocab = alone.Config.VocabSize;
        var random = new Random(seed);
        int[][] prompts = [.. Enumerable.Range(0, sequenceCount).Select(_ => RandomTokens(random, random.Next(1, 71), vocab))];
        float[][] expected = [.. prompts.Select(p => AloneLogits(alone, p, dtype))];
        int[][] tables = BlockTables(random, [.. prompts.Select(p => p.Length)], blockSize, out int blockCount);
        var cache = new PagedKvCache(batched.Config, blockCount, blockSize, dtype);
        var done = new int[sequenceCount];
        int steps = 0, rowsChecked = 0;
        while (done.Where((d, s) => d < prompts[s].Length).Any())
        {
            int[] unfinished = [.. Enumerable.Range(0, sequenceCount).Where(s => done[s] < prompts[s].Length)];
            random.Shuffle(unfinished);
            int[] chosen = unfinished[..random.Next(1, unfinished.Length + 1)];
            var tokens = new List<int>();
            var slices = new List<SequenceSlice>();
            var wanted = new List<(int Sequence, int Position)>();
            foreach (int s in chosen)
            {
                int remaining = prompts[s].Length - done[s];
                int piece = random.Next(3) == 0 ? 1 : random.Next(1, Math.Min(remaining, 20) + 1);
                piece = Math.Min(piece, remaining);
                bool want = random.Next(4) != 0;
                slices.Add(new SequenceSlice(tokens.Count, piece, done[s], tables[s], want));
                tokens.AddRange(prompts[s].AsSpan(done[s], piece));
                if (want)
                {
                    wanted.Add((s, done[s] + piece - 1));
                }

                done[s] += piece;
            }

            var logits = new float[wanted.Count * vocab];
            batched.Forward([.. tokens], [.. slices], cache, logits);
            for (int r = 0; r < wanted.Count; r++)
            {
                (int s, int p) = wanted[r];
                BatchTestModels.AssertBitIdentical(
                    expected[s].AsSpan(p * vocab, vocab), logits.AsSpan(r * vocab, vocab),
                    $"{modelName}, {dtype} KV, block size {blockSize}, step {steps}: sequence {s} position {p} (batched with {chosen.Length - 1} others)");
                rowsChecked++;
            }

            steps++;
        }

        Assert.True(rowsChecked > 0);
    }

    [Theory]
    [InlineData(1, 1, KvCacheDtype.F32)]
    [InlineData(1, 2, KvCacheDtype.F32)]
    [InlineData(1, 8, KvCacheDtype.F32)]
    [InlineData(3, 1, KvCacheDtype.F32)]
    [InlineData(3, 3, KvCacheDtype.F32)]
    [InlineData(3, 8, KvCacheDtype.F32)]
    [InlineData(16, 2, KvCacheDtype.F32)]
    [InlineData(16, 5, KvCacheDtype.F32)]
    [InlineData(16, 8, KvCacheDtype.F32)]
    [InlineData(64, 1, KvCacheDtype.F32)]
    [InlineData(64, 4, KvCacheDtype.F32)]
    [InlineData(64, 8, KvCacheDtype.F32)]
    [InlineData(1, 2, KvCacheDtype.F16)]
    [InlineData(1, 8, KvCacheDtype.F16)]
    [InlineData(3, 3, KvCacheDtype.F16)]
    [InlineData(3, 8, KvCacheDtype.F16)]
    [InlineData(16, 5, KvCacheDtype.F16)]
    [InlineData(16, 8, KvCacheDtype.F16)]
    [InlineData(64, 4, KvCacheDtype.F16)]
    [InlineData(64, 8, KvCacheDtype.F16)]
    public void Forward_BatchedWithOthers_LogitsBitIdenticalToAlone(int blockSize, int sequences, KvCacheDtype dtype)
    {
        CheckBatchedAgainstAlone("llama", blockSize, sequences, seed: 100 * blockSize + sequences, dtype: dtype);
    }

    /// <summary>
    /// An F16 cache that holds only finite halves is read scaled (<see cref="Dynamo.Engine.Kernels.F16ScaledKvElement"/>);
    /// one that may hold an infinity or a NaN is read with the test per group. Both give the same bits: a prompt and then
    /// a decode token by token, on two caches alike but for that mark.
    /// </summary>
    [Theory]
    [InlineData("llama", 3)]
    [InlineData("qwen3", 4)]
    [InlineData("Q8_0", 5)]
    public void Forward_F16CacheMarkedNonFinite_SameBitsAsTheScaledRead(string modelName, int seed)
    {
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path(modelName)), 64);
        int vocab = model.Config.VocabSize;
        var random = new Random(seed);
        int[] tokens = RandomTokens(random, 40, vocab);
        var finite = new SequenceKvCache(model.Config, tokens.Length, KvCacheDtype.F16);
        var marked = new SequenceKvCache(model.Config, tokens.Length, KvCacheDtype.F16);
        marked.Paged.NoteStored([float.PositiveInfinity]);
        Assert.True(marked.Paged.HoldsNonFinite);
        float[] a = new float[20 * vocab], b = new float[20 * vocab];
        model.Forward(tokens.AsSpan(0, 20), 0, finite, a, allLogits: true);
        model.Forward(tokens.AsSpan(0, 20), 0, marked, b, allLogits: true);
        BatchTestModels.AssertBitIdentical(a, b, $"{modelName}: prompt");
        for (int p = 20; p < tokens.Length; p++)
        {
            model.Forward(tokens.AsSpan(p, 1), p, finite, a.AsSpan(0, vocab));
            model.Forward(tokens.AsSpan(p, 1), p, marked, b.AsSpan(0, vocab));
            BatchTestModels.AssertBitIdentical(a.AsSpan(0, vocab), b.AsSpan(0, vocab), $"{modelName}: decode at position {p}");
        }

        Assert.False(finite.Paged.HoldsNonFinite);
    }

    /// <summary>QKV bias (Qwen2) and QK-norm with wide heads (Qwen3): more per-token operations, same invariance.</summary>
    [Theory]
    [InlineData("qwen2", 3, KvCacheDtype.F32)]
    [InlineData("qwen2", 16, KvCacheDtype.F32)]
    [InlineData("qwen3", 1, KvCacheDtype.F32)]
    [InlineData("qwen3", 64, KvCacheDtype.F32)]
    [InlineData("qwen2", 3, KvCacheDtype.F16)]
    [InlineData("qwen3", 1, KvCacheDtype.F16)]
    public void Forward_BatchedOtherArchitectures_LogitsBitIdenticalToAlone(string model, int blockSize, KvCacheDtype dtype)
    {
        CheckBatchedAgainstAlone(model, blockSize, sequenceCount: 6, seed: blockSize, dtype: dtype);
    }

    /// <remarks>
    /// Relies on the quantized matrix kernels computing a row the same way at any batch position (the Q8_0 / Q4_0
    /// 4-row dot products must give the bits of the 1-row one). Until that kernel change is merged this may fail:
    /// the batching itself is checked by the F32 tests above.
    /// </remarks>
    [Theory]
    [InlineData("Q8_0", 3, KvCacheDtype.F32)]
    [InlineData("Q8_0", 16, KvCacheDtype.F32)]
    [InlineData("Q4_0", 3, KvCacheDtype.F32)]
    [InlineData("Q4_0", 16, KvCacheDtype.F32)]
    [InlineData("Q8_0", 16, KvCacheDtype.F16)]
    [InlineData("Q4_0", 3, KvCacheDtype.F16)]
    public void Forward_BatchedQuantized_LogitsBitIdenticalToAlone(string model, int blockSize, KvCacheDtype dtype)
    {
        CheckBatchedAgainstAlone(model, blockSize, sequenceCount: 8, seed: blockSize + 7, dtype: dtype);
    }

    /// <summary>
    /// With passes of one token every matrix product has batch 1, whatever the kernels do with larger batches: the
    /// batching, paging and chunking are then exact on quantized weights too (on any branch).
    /// </summary>
    [Theory]
    [InlineData("Q8_0", 3)]
    [InlineData("Q4_0", 16)]
    public void Forward_BatchedQuantizedOneTokenPerPass_LogitsBitIdenticalToAlone(string model, int blockSize)
    {
        CheckBatchedAgainstAlone(model, blockSize, sequenceCount: 5, seed: blockSize + 3, maxBatch: 1, aloneMaxBatch: 1);
    }

    /// <summary>A prompt prefilled in random pieces (one call each) stores the same keys and values and gives the same logits as one call.</summary>
    [Theory]
    [InlineData(1, KvCacheDtype.F32)]
    [InlineData(3, KvCacheDtype.F32)]
    [InlineData(16, KvCacheDtype.F32)]
    [InlineData(64, KvCacheDtype.F32)]
    [InlineData(3, KvCacheDtype.F16)]
    [InlineData(64, KvCacheDtype.F16)]
    public void Forward_PrefillInRandomPieces_BitIdenticalToWhole(int blockSize, KvCacheDtype dtype)
    {
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path("llama")), maxBatch: 32);
        int vocab = model.Config.VocabSize;
        var random = new Random(blockSize);
        int[] prompt = RandomTokens(random, 90, vocab);
        const int Decode = 8;
        int[][] tables = BlockTables(random, [prompt.Length + Decode, prompt.Length + Decode], blockSize, out int blockCount);
        var cache = new PagedKvCache(model.Config, blockCount, blockSize, dtype);
        var whole = new float[vocab];
        var pieces = new float[vocab];

        model.Forward(prompt, [new SequenceSlice(0, prompt.Length, 0, tables[0], true)], cache, whole);
        var cuts = new List<int>();
        for (int done = 0; done < prompt.Length;)
        {
            int piece = Math.Min(random.Next(1, 25), prompt.Length - done);
            bool last = done + piece == prompt.Length;
            model.Forward(prompt.AsSpan(done, piece), [new SequenceSlice(0, piece, done, tables[1], last)], cache, pieces);
            cuts.Add(piece);
            done += piece;
        }

        string label = $"{dtype} KV, block size {blockSize}, pieces {string.Join('+', cuts)}";
        BatchTestModels.AssertBitIdentical(whole, pieces, label);
        for (int s = 0; s < Decode; s++)
        {
            int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(whole);
            int pos = prompt.Length + s;
            model.Forward([next], [new SequenceSlice(0, 1, pos, tables[0], true)], cache, whole);
            model.Forward([next], [new SequenceSlice(0, 1, pos, tables[1], true)], cache, pieces);
            BatchTestModels.AssertBitIdentical(whole, pieces, $"{label}, decode step {s}");
        }

        int tokens = prompt.Length + Decode;
        byte[] kvWhole = new byte[cache.ExportedBytes(tokens)], kvPieces = new byte[kvWhole.Length];
        cache.Export(tables[0], tokens, kvWhole);
        cache.Export(tables[1], tokens, kvPieces);
        Assert.True(kvWhole.AsSpan().SequenceEqual(kvPieces), $"{label}: the stored keys and values differ");
    }

    /// <summary>A step of several sequences cut into passes of 5 tokens (slices split across passes) equals one pass.</summary>
    [Fact]
    public void Forward_PassesSmallerThanTheStep_BitIdenticalToOnePass()
    {
        string path = BatchTestModels.Path("llama");
        using var onePass = new Transformer(ModelLoader.Load(path), maxBatch: 128);
        using var smallPasses = new Transformer(ModelLoader.Load(path), maxBatch: 5);
        int vocab = onePass.Config.VocabSize;
        var random = new Random(5);
        int[] lengths = [13, 1, 29, 7];
        int[] starts = [0, 0, 0, 3];
        int[][] tables = BlockTables(random, [.. lengths.Zip(starts, (n, s) => n + s)], blockSize: 4, out int blockCount);
        var cacheA = new PagedKvCache(onePass.Config, blockCount, 4);
        var cacheB = new PagedKvCache(onePass.Config, blockCount, 4);
        int[] history = RandomTokens(random, 3, vocab);
        onePass.Forward(history, [new SequenceSlice(0, 3, 0, tables[3], false)], cacheA, []);
        smallPasses.Forward(history, [new SequenceSlice(0, 3, 0, tables[3], false)], cacheB, []);
        int[] tokens = RandomTokens(random, lengths.Sum(), vocab);
        var slices = new SequenceSlice[lengths.Length];
        for (int s = 0, at = 0; s < lengths.Length; at += lengths[s], s++)
        {
            slices[s] = new SequenceSlice(at, lengths[s], starts[s], tables[s], WantLogits: s != 1);
        }

        var expected = new float[3 * vocab];
        var actual = new float[3 * vocab];
        onePass.Forward(tokens, slices, cacheA, expected);
        smallPasses.Forward(tokens, slices, cacheB, actual);

        for (int r = 0; r < 3; r++)
        {
            BatchTestModels.AssertBitIdentical(expected.AsSpan(r * vocab, vocab), actual.AsSpan(r * vocab, vocab), $"row {r}");
        }
    }

    /// <summary>Slices without WantLogits write no row: rows follow the slices that want them, in slice order.</summary>
    [Fact]
    public void Forward_SomeSlicesWantLogits_RowsInSliceOrderOfThoseOnly()
    {
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path("llama")));
        int vocab = model.Config.VocabSize;
        var random = new Random(9);
        int[][] prompts = [RandomTokens(random, 6, vocab), RandomTokens(random, 4, vocab), RandomTokens(random, 9, vocab)];
        int[][] tables = BlockTables(random, [6, 4, 9], blockSize: 2, out int blockCount);
        var cache = new PagedKvCache(model.Config, blockCount, 2);
        var logits = new float[3 * vocab];
        logits.AsSpan().Fill(float.NaN);

        model.Forward([.. prompts[0], .. prompts[1], .. prompts[2]],
            [new SequenceSlice(0, 6, 0, tables[0], true), new SequenceSlice(6, 4, 0, tables[1], false), new SequenceSlice(10, 9, 0, tables[2], true)],
            cache, logits);

        BatchTestModels.AssertBitIdentical(AloneLogits(model, prompts[0]).AsSpan(5 * vocab, vocab), logits.AsSpan(0, vocab), "row 0 (sequence 0)");
        BatchTestModels.AssertBitIdentical(AloneLogits(model, prompts[2]).AsSpan(8 * vocab, vocab), logits.AsSpan(vocab, vocab), "row 1 (sequence 2)");
        Assert.All(logits.AsSpan(2 * vocab).ToArray(), v => Assert.True(float.IsNaN(v)));
    }

    /// <summary>
    /// The single-sequence API (a <see cref="SequenceKvCache"/> is one block of its capacity) and the paged path give the same
    /// logits, last-token and all-token, and store the same keys and values.
    /// </summary>
    [Theory]
    [InlineData(1, KvCacheDtype.F32)]
    [InlineData(16, KvCacheDtype.F32)]
    [InlineData(1, KvCacheDtype.F16)]
    [InlineData(16, KvCacheDtype.F16)]
    public void Forward_SequenceKvCacheApi_SameLogitsAndKvAsPagedPath(int blockSize, KvCacheDtype dtype)
    {
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path("llama")), maxBatch: 16);
        int vocab = model.Config.VocabSize;
        var random = new Random(3);
        int[] prompt = RandomTokens(random, 37, vocab);
        const int Decode = 6;
        var single = new SequenceKvCache(model.Config, prompt.Length + Decode, dtype);
        int[][] tables = BlockTables(random, [prompt.Length + Decode], blockSize, out int blockCount);
        var paged = new PagedKvCache(model.Config, blockCount, blockSize, dtype);
        var all = new float[prompt.Length * vocab];
        var last = new float[vocab];
        var pagedLast = new float[vocab];

        model.Forward(prompt, 0, single, all, allLogits: true);
        model.Forward(prompt, [new SequenceSlice(0, prompt.Length, 0, tables[0], true)], paged, pagedLast);
        BatchTestModels.AssertBitIdentical(all.AsSpan((prompt.Length - 1) * vocab, vocab), pagedLast, "prefill, all-logits form");
        for (int s = 0; s < Decode; s++)
        {
            int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(pagedLast);
            model.Forward([next], prompt.Length + s, single, last);
            model.Forward([next], [new SequenceSlice(0, 1, prompt.Length + s, tables[0], true)], paged, pagedLast);
            BatchTestModels.AssertBitIdentical(last, pagedLast, $"decode step {s}");
        }

        int tokens = prompt.Length + Decode;
        byte[] kvSingle = new byte[paged.ExportedBytes(tokens)], kvPaged = new byte[kvSingle.Length];
        single.Paged.Export(single.BlockTable, tokens, kvSingle);
        paged.Export(tables[0], tokens, kvPaged);
        Assert.True(kvSingle.AsSpan().SequenceEqual(kvPaged), "the stored keys and values differ");
    }

    /// <summary>
    /// Once warm (scratch grown to the step's shape, quantized matrices repacked), a batched decode step allocates
    /// nothing: F32 and the packed Q8_0/Q4_0 kernels, with either KV element type. With one kernel thread every product
    /// runs on the calling thread, so its counter sees all of the step's work (the pool's threads run the same chunk
    /// code); with two threads the calling thread's part is checked too. Two, not the default: the default pool is the
    /// process's, shared with tests running beside this one, and waiting for its lock may allocate the lock's waiter.
    /// </summary>
    [Theory]
    [InlineData("llama", 1, KvCacheDtype.F32)]
    [InlineData("llama", 1, KvCacheDtype.F16)]
    [InlineData("llama", 2, KvCacheDtype.F16)]
    [InlineData("Q8_0", 1, KvCacheDtype.F16)]
    [InlineData("Q8_0", 2, KvCacheDtype.F32)]
    [InlineData("Q4_0", 1, KvCacheDtype.F16)]
    public void Forward_WarmBatchedDecodeStep_AllocatesNothing(string name, int threads, KvCacheDtype dtype)
    {
        using KernelThreads.ThreadOverride scope = KernelThreads.OverrideOnCurrentThread(threads);
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path(name)));
        var random = new Random(4);
        int[][] tables = BlockTables(random, [60, 60, 60, 60], blockSize: 4, out int blockCount);
        var cache = new PagedKvCache(model.Config, blockCount, 4, dtype);
        int[] tokens = [1, 2, 3, 4];
        var slices = new SequenceSlice[4];
        var logits = new float[4 * model.Config.VocabSize];
        void Step(int pos)
        {
            for (int s = 0; s < 4; s++)
            {
                slices[s] = new SequenceSlice(s, 1, pos + s, tables[s], true);
            }

            model.Forward(tokens, slices, cache, logits);
        }

        for (int pos = 0; pos < 40; pos++)
        {
            Step(pos);
        }

        // Per step, so that a failure says which step allocated and how much (and whether a collection ran then).
        var bytes = new long[10];
        var collections = new int[10];
        for (int i = 0; i < bytes.Length; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            int gcBefore = GC.CollectionCount(0);
            Step(40 + i);
            bytes[i] = GC.GetAllocatedBytesForCurrentThread() - before;
            collections[i] = GC.CollectionCount(0) - gcBefore;
        }

        Assert.True(bytes.All(b => b == 0),
            $"bytes allocated per warm step: [{string.Join(", ", bytes)}]; gen-0 collections during each: [{string.Join(", ", collections)}]");
    }

    [Fact]
    public void Constructor_SequenceKvCache_IsOneBlockOfItsCapacity()
    {
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path("llama")));

        var cache = new SequenceKvCache(model.Config, 40);

        Assert.Equal(40, cache.Capacity);
        Assert.Equal(1, cache.Paged.BlockCount);
        Assert.Equal(40, cache.Paged.BlockSize);
        Assert.Equal(model.Config.KvHeads * model.Config.HeadDim, cache.KvDim);
        Assert.Equal([0], cache.BlockTable);
    }

    /// <summary>Each bad input is refused before anything runs, with a message that says what is wrong.</summary>
    [Theory]
    [InlineData("gap", "without gaps or overlaps")]
    [InlineData("overlap", "without gaps or overlaps")]
    [InlineData("unsorted", "sequence 1 starts at token 5, but slice 0 ends at token 3")]
    [InlineData("first not at 0", "the first slice must start at token 0")]
    [InlineData("fewer tokens covered", "the slices cover 5 tokens, but 8 were given")]
    [InlineData("more tokens covered", "only 8 tokens were given")]
    [InlineData("empty slice", "a slice runs at least 1")]
    [InlineData("no slices", "no sequences to run")]
    [InlineData("negative position", "starts at position -1")]
    [InlineData("beyond block table", "positions 4..8 need 3 blocks of 4 tokens; its block table has 2")]
    [InlineData("block outside pool", "block table entry 1 is block 12, outside the pool of 12 blocks")]
    [InlineData("negative block", "block table entry 0 is block -1")]
    [InlineData("no block table", "has no block table")]
    [InlineData("token outside vocab", "token id 80 (at 6) is outside the vocabulary of 80")]
    [InlineData("negative token", "token id -3 (at 0) is outside the vocabulary")]
    [InlineData("logits too small", "logits buffer too small: 2 rows of 80 need 160 floats, got 159")]
    [InlineData("cache of another model", "this model has 2 x 2 x 16")]
    public void Forward_InvalidInput_ThrowsBeforeRunning(string scenario, string message)
    {
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path("llama")));
        Assert.Equal(80, model.Config.VocabSize);
        var cache = new PagedKvCache(model.Config, 12, 4);
        int[] a = [0, 1, 2], b = [3, 4, 5];
        int[] tokens = [5, 6, 7, 8, 9, 10, 11, 12];
        var logits = new float[2 * 80];
        SequenceSlice s0 = new(0, 3, 0, a, true), s1 = new(3, 5, 0, b, true);
        SequenceSlice[] slices = scenario switch
        {
            "gap" => [s0, s1 with { TokenStart = 4, TokenCount = 4 }],
            "overlap" => [s0, s1 with { TokenStart = 2, TokenCount = 6 }],
            "unsorted" => [s0, s1 with { TokenStart = 5, TokenCount = 3 }, new SequenceSlice(3, 2, 0, [6], true)],
            "first not at 0" => [s0 with { TokenStart = 1 }, s1],
            "fewer tokens covered" => [s0, s1 with { TokenCount = 2 }],
            "more tokens covered" => [s0, s1 with { TokenCount = 6 }],
            "empty slice" => [s0, s1 with { TokenCount = 0 }],
            "no slices" => [],
            "negative position" => [s0, s1 with { StartPos = -1 }],
            "beyond block table" => [s0, s1 with { StartPos = 4, BlockTable = [3, 4] }],
            "block outside pool" => [s0, s1 with { BlockTable = [3, 12] }],
            "negative block" => [s0, s1 with { BlockTable = [-1, 4] }],
            "no block table" => [s0, s1 with { BlockTable = null! }],
            _ => [s0, s1],
        };
        if (scenario == "token outside vocab")
        {
            tokens[6] = 80;
        }
        else if (scenario == "negative token")
        {
            tokens[0] = -3;
        }
        else if (scenario == "logits too small")
        {
            logits = new float[159];
        }
        else if (scenario == "cache of another model")
        {
            cache = new PagedKvCache(model.Config with { KvHeads = 4 }, 12, 4);
        }

        var before = new byte[cache.ExportedBytes(4)];
        cache.Export([0], 4, before);

        ArgumentException e = Assert.ThrowsAny<ArgumentException>(() => model.Forward(tokens, slices, cache, logits));

        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        var after = new byte[before.Length];
        cache.Export([0], 4, after);
        Assert.True(before.AsSpan().SequenceEqual(after), "a refused call wrote keys or values");
    }

    [Fact]
    public void Forward_SequenceKvCachePositionsBeyondCapacity_ThrowsNamingBoth()
    {
        using var model = new Transformer(ModelLoader.Load(BatchTestModels.Path("llama")));
        var cache = new SequenceKvCache(model.Config, 8);

        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(() => model.Forward([1, 2, 3], 6, cache, new float[80]));

        Assert.Contains("positions 6..8 do not fit a KV cache of 8", e.Message, StringComparison.Ordinal);
    }
}

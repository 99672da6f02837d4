using System.Runtime.InteropServices;
using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Llm.Kv;
using Dynamo.Tests.Engine.Inference;

namespace Dynamo.Tests.Engine.KvCache;

public sealed class PagedKvCacheTests
{
    /// <summary>3 layers, 2 kv heads of 4: kvDim 8.</summary>
    private static readonly ModelConfig Small = new()
    {
        Architecture = "llama", Dim = 16, HiddenDim = 32, Layers = 3, Heads = 4, KvHeads = 2, HeadDim = 4, VocabSize = 10, ContextLength = 64,
    };

    /// <summary>Fills every slot with a value that names it: layer, keys or values, slot index, element.</summary>
    private static void FillNamed(PagedKvCache cache)
    {
        for (int l = 0; l < cache.Layers; l++)
        {
            Span<float> keys = cache.Keys<float>(l), values = cache.Values<float>(l);
            for (int i = 0; i < keys.Length; i++)
            {
                keys[i] = l * 1_000_000 + i;
                values[i] = -(l * 1_000_000 + i) - 1;
            }
        }
    }

    /// <summary>Random values in (-1, 1) in every slot, rounded to half in an F16 cache.</summary>
    private static void FillRandom(PagedKvCache cache, int seed)
    {
        var random = new Random(seed);
        for (int l = 0; l < cache.Layers; l++)
        {
            for (int kind = 0; kind < 2; kind++)
            {
                if (cache.Dtype == KvCacheDtype.F16)
                {
                    Span<Half> a = kind == 0 ? cache.Keys<Half>(l) : cache.Values<Half>(l);
                    for (int i = 0; i < a.Length; i++)
                    {
                        a[i] = (Half)(random.NextDouble() * 2 - 1);
                    }
                }
                else
                {
                    Span<float> a = kind == 0 ? cache.Keys<float>(l) : cache.Values<float>(l);
                    for (int i = 0; i < a.Length; i++)
                    {
                        a[i] = (float)(random.NextDouble() * 2 - 1);
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(KvCacheDtype.F32)]
    [InlineData(KvCacheDtype.F16)]
    public void Constructor_Config_SizesEveryLayerAsBlocksTimesSlots(KvCacheDtype dtype)
    {
        var cache = new PagedKvCache(Small, blockCount: 5, blockSize: 3, dtype);

        Assert.Equal(5, cache.BlockCount);
        Assert.Equal(3, cache.BlockSize);
        Assert.Equal(3, cache.Layers);
        Assert.Equal(8, cache.KvDim);
        Assert.Equal(dtype, cache.Dtype);
        for (int l = 0; l < 3; l++)
        {
            Assert.Equal(5 * 3 * 8, dtype == KvCacheDtype.F16 ? cache.Keys<Half>(l).Length : cache.Keys<float>(l).Length);
            Assert.Equal(5 * 3 * 8, dtype == KvCacheDtype.F16 ? cache.Values<Half>(l).Length : cache.Values<float>(l).Length);
        }
    }

    /// <summary>An F16 cache takes half the bytes of an F32 one: the same memory budget holds twice the blocks.</summary>
    [Theory]
    [InlineData(KvCacheDtype.F32, 4)]
    [InlineData(KvCacheDtype.F16, 2)]
    public void BytesPerBlock_Config_IsTheArraysBytesOverTheBlocks(KvCacheDtype dtype, int elementBytes)
    {
        var cache = new PagedKvCache(Small, blockCount: 5, blockSize: 3, dtype);

        long arrays = Enumerable.Range(0, 3).Sum(l => dtype == KvCacheDtype.F16
            ? (long)(cache.Keys<Half>(l).Length + cache.Values<Half>(l).Length) * 2
            : (long)(cache.Keys<float>(l).Length + cache.Values<float>(l).Length) * sizeof(float));

        Assert.Equal(arrays, PagedKvCache.BytesPerBlock(Small, 3, dtype) * 5);
        Assert.Equal(2L * 3 * 3 * 8 * elementBytes, PagedKvCache.BytesPerBlock(Small, 3, dtype));
        Assert.Equal(cache.Layout(7).ByteCount, cache.ExportedBytes(7));
        Assert.Equal(2L * 3 * 7 * 8 * elementBytes, cache.ExportedBytes(7));
    }

    [Theory]
    [InlineData(0, 4)]
    [InlineData(4, 0)]
    public void Constructor_NonPositiveSize_Throws(int blockCount, int blockSize)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new PagedKvCache(Small, blockCount, blockSize));
    }

    [Fact]
    public void Constructor_PoolOverOneArray_ThrowsNamingTheSizes()
    {
        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(() => new PagedKvCache(Small, 1 << 20, 512, KvCacheDtype.F16));

        Assert.Contains("1048576 blocks of 512 tokens x 8 floats", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Buffer order: [layer][keys, then values][token][kv head][head dim], tokens read through the block table from head-major blocks.</summary>
    [Fact]
    public void Export_NamedSlots_WritesLayerKeysThenValuesTokenMajor()
    {
        var cache = new PagedKvCache(Small, blockCount: 4, blockSize: 3);
        FillNamed(cache);
        int[] table = [2, 0, 3];
        const int Tokens = 7;
        var bytes = new byte[cache.ExportedBytes(Tokens)];

        cache.Export(table, Tokens, bytes);

        Assert.Equal(3 * 2 * Tokens * 8 * 4, bytes.Length);
        ReadOnlySpan<float> buffer = MemoryMarshal.Cast<byte, float>(bytes);
        for (int l = 0; l < 3; l++)
        {
            for (int kind = 0; kind < 2; kind++)
            {
                Span<float> store = kind == 0 ? cache.Keys<float>(l) : cache.Values<float>(l);
                for (int t = 0; t < Tokens; t++)
                {
                    // In the store a block is head-major: kv head h of offset t at ((block * 2 + h) * 3 + t) * 4.
                    int block = table[t / 3], offset = t % 3;
                    for (int j = 0; j < 8; j++)
                    {
                        int h = j / 4, d = j % 4;
                        Assert.Equal(store[((block * 2 + h) * 3 + offset) * 4 + d], buffer[((l * 2 + kind) * Tokens + t) * 8 + j]);
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(3, 4, 10, KvCacheDtype.F32)]
    [InlineData(4, 3, 10, KvCacheDtype.F32)]
    [InlineData(1, 16, 5, KvCacheDtype.F32)]
    [InlineData(16, 1, 12, KvCacheDtype.F32)]
    [InlineData(5, 5, 0, KvCacheDtype.F32)]
    [InlineData(3, 4, 10, KvCacheDtype.F16)]
    [InlineData(16, 1, 12, KvCacheDtype.F16)]
    [InlineData(5, 5, 0, KvCacheDtype.F16)]
    public void Import_ExportedBuffer_RoundTripsAcrossBlockSizes(int fromBlockSize, int toBlockSize, int tokens, KvCacheDtype dtype)
    {
        var from = new PagedKvCache(Small, blockCount: 20, blockSize: fromBlockSize, dtype);
        var to = new PagedKvCache(Small, blockCount: 20, blockSize: toBlockSize, dtype);
        FillRandom(from, 1);
        FillRandom(to, 2);
        int[] fromTable = [.. Enumerable.Range(0, 20).Reverse()];
        int[] toTable = [.. Enumerable.Range(0, 20).Select(i => (i * 7) % 20)];
        var exported = new byte[from.ExportedBytes(tokens)];
        from.Export(fromTable, tokens, exported);
        KvTransferLayout layout = KvTransferLayout.FromJson(from.Layout(tokens).ToJson());

        to.Import(toTable, layout, exported);

        var again = new byte[to.ExportedBytes(tokens)];
        to.Export(toTable, tokens, again);
        Assert.Equal(fromBlockSize, layout.BlockSize);
        Assert.Equal(dtype.Name(), layout.Dtype);
        Assert.True(exported.AsSpan().SequenceEqual(again));
    }

    /// <summary>
    /// An F16 cache knows when it may hold an infinity or a NaN (attention then tests every group of halves it reads):
    /// finite stores and imports leave it clear; a value that rounds past the largest half (65520 and up), a NaN, or an
    /// imported half with an all-ones exponent sets it for good. An F32 cache never sets it.
    /// </summary>
    [Theory]
    [InlineData(65519.99f, false)]
    [InlineData(-65504f, false)]
    [InlineData(65520f, true)]
    [InlineData(-65520f, true)]
    [InlineData(float.PositiveInfinity, true)]
    [InlineData(float.NaN, true)]
    public void HoldsNonFinite_SetByAStoreOrImportNoFiniteHalfHolds(float value, bool nonFinite)
    {
        var f16 = new PagedKvCache(Small, blockCount: 4, blockSize: 4, KvCacheDtype.F16);
        var f32 = new PagedKvCache(Small, blockCount: 4, blockSize: 4, KvCacheDtype.F32);
        f16.NoteStored([1f, -2f, 0.5f, 65504f, 1e-8f, 3f, 4f, 5f, 6f]);
        Assert.False(f16.HoldsNonFinite);

        float[] stored = [1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f, 9f, 10f, 11f, 12f, 13f, 14f, 15f, 16f, 17f];
        stored[^3] = value;
        f16.NoteStored(stored);
        f32.NoteStored(stored);
        f16.NoteStored([1f]);
        Assert.Equal(nonFinite, f16.HoldsNonFinite);
        Assert.False(f32.HoldsNonFinite);

        // Imports: of f32 into F16 (rounded as a pass stores), and of f16 halves (their bits as they come).
        foreach (KvCacheDtype from in new[] { KvCacheDtype.F32, KvCacheDtype.F16 })
        {
            var target = new PagedKvCache(Small, blockCount: 4, blockSize: 4, KvCacheDtype.F16);
            KvTransferLayout layout = target.Layout(3) with { Dtype = from.Name() };
            var floats = new float[2 * Small.Layers * 3 * 8];
            for (int i = 0; i < floats.Length; i++)
            {
                floats[i] = (i % 7) - 3.5f;
            }

            target.Import([0], layout, from == KvCacheDtype.F32 ? MemoryMarshal.AsBytes(floats.AsSpan()) : MemoryMarshal.AsBytes(Halves(floats).AsSpan()));
            Assert.False(target.HoldsNonFinite);
            floats[^5] = value;
            target.Import([1], layout, from == KvCacheDtype.F32 ? MemoryMarshal.AsBytes(floats.AsSpan()) : MemoryMarshal.AsBytes(Halves(floats).AsSpan()));
            Assert.Equal(nonFinite, target.HoldsNonFinite);
        }

        static Half[] Halves(float[] x) => [.. x.Select(v => (Half)v)];
    }

    /// <summary>
    /// Between element types the import converts: f32 into an F16 cache stores each value rounded to the nearest half
    /// (as a forward pass stores it); f16 into an F32 cache stores each half's exact value, so F16 -> F32 -> F16 gives
    /// back the same bits.
    /// </summary>
    [Theory]
    [InlineData(3, 4, 10)]
    [InlineData(16, 1, 12)]
    [InlineData(5, 5, 0)]
    public void Import_OtherDtype_ConvertedRoundedOrExact(int fromBlockSize, int toBlockSize, int tokens)
    {
        var f32 = new PagedKvCache(Small, blockCount: 20, blockSize: fromBlockSize, KvCacheDtype.F32);
        var f16 = new PagedKvCache(Small, blockCount: 20, blockSize: toBlockSize, KvCacheDtype.F16);
        var back = new PagedKvCache(Small, blockCount: 20, blockSize: fromBlockSize, KvCacheDtype.F32);
        FillRandom(f32, 1);
        FillRandom(f16, 2);
        int[] f32Table = [.. Enumerable.Range(0, 20).Reverse()];
        int[] f16Table = [.. Enumerable.Range(0, 20).Select(i => (i * 7) % 20)];
        var exported = new byte[f32.ExportedBytes(tokens)];
        f32.Export(f32Table, tokens, exported);

        f16.Import(f16Table, KvTransferLayout.FromJson(f32.Layout(tokens).ToJson()), exported);

        var halves = new byte[f16.ExportedBytes(tokens)];
        f16.Export(f16Table, tokens, halves);
        Assert.Equal(exported.Length / 2, halves.Length);
        float[] sent = MemoryMarshal.Cast<byte, float>(exported).ToArray();
        Half[] stored = MemoryMarshal.Cast<byte, Half>(halves).ToArray();
        for (int i = 0; i < sent.Length; i++)
        {
            Assert.Equal(BitConverter.HalfToUInt16Bits((Half)sent[i]), BitConverter.HalfToUInt16Bits(stored[i]));
        }

        back.Import(f32Table, f16.Layout(tokens), halves);

        var widened = new byte[back.ExportedBytes(tokens)];
        back.Export(f32Table, tokens, widened);
        float[] exact = MemoryMarshal.Cast<byte, float>(widened).ToArray();
        Assert.Equal(stored.Select(h => BitConverter.SingleToInt32Bits((float)h)), exact.Select(BitConverter.SingleToInt32Bits));
        var again = new PagedKvCache(Small, blockCount: 20, blockSize: 2, KvCacheDtype.F16);
        int[] againTable = [.. Enumerable.Range(0, 20)];
        again.Import(againTable, back.Layout(tokens), widened);
        var halvesAgain = new byte[halves.Length];
        again.Export(againTable, tokens, halvesAgain);
        Assert.True(halves.AsSpan().SequenceEqual(halvesAgain));
    }

    [Theory]
    [InlineData("layers", "KV transfer layers mismatch: the buffer has 4, this cache has 3")]
    [InlineData("kv_heads", "KV transfer kv_heads mismatch: the buffer has 1, this cache has 2")]
    [InlineData("head_dim", "KV transfer head_dim mismatch: the buffer has 8, this cache has 4")]
    [InlineData("dtype", "KV transfer dtype \"q8_0\" is not one this cache reads (\"f32\" or \"f16\"; it stores \"f32\")")]
    public void Import_OtherShape_ThrowsNamingTheField(string field, string message)
    {
        var cache = new PagedKvCache(Small, blockCount: 4, blockSize: 3);
        KvTransferLayout layout = cache.Layout(5);
        layout = field switch
        {
            "layers" => layout with { Layers = 4 },
            "kv_heads" => layout with { KvHeads = 1 },
            "head_dim" => layout with { HeadDim = 8 },
            _ => layout with { Dtype = "q8_0" },
        };

        ArgumentException e = Assert.Throws<ArgumentException>(() => cache.Import([0, 1], layout, new byte[cache.ExportedBytes(5)]));

        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Import_OtherBlockSize_IsAccepted()
    {
        var cache = new PagedKvCache(Small, blockCount: 4, blockSize: 3);

        cache.Import([0, 1], cache.Layout(5) with { BlockSize = 64 }, new byte[cache.ExportedBytes(5)]);
    }

    [Fact]
    public void Import_TooFewBlocks_ThrowsNamingBoth()
    {
        var cache = new PagedKvCache(Small, blockCount: 4, blockSize: 3);

        ArgumentException e = Assert.Throws<ArgumentException>(() => cache.Import([0], cache.Layout(5), new byte[cache.ExportedBytes(5)]));

        Assert.Contains("5 tokens need 2 blocks of 3; the block table has 1", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Import_SourceOfOtherLength_Throws()
    {
        var cache = new PagedKvCache(Small, blockCount: 4, blockSize: 3);

        ArgumentException e = Assert.Throws<ArgumentException>(() => cache.Import([0, 1], cache.Layout(5), new byte[cache.ExportedBytes(5) - 4]));

        Assert.Contains($"5 tokens of this layout take {cache.ExportedBytes(5)} bytes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_BlockOutsidePool_Throws()
    {
        var cache = new PagedKvCache(Small, blockCount: 4, blockSize: 3);

        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(() => cache.Export([0, 4], 5, new byte[cache.ExportedBytes(5)]));

        Assert.Contains("block table entry 1 is block 4, outside the pool of 4 blocks", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Export_DestinationTooSmall_Throws()
    {
        var cache = new PagedKvCache(Small, blockCount: 4, blockSize: 3);

        Assert.Throws<ArgumentException>(() => cache.Export([0, 1], 5, new byte[cache.ExportedBytes(5) - 1]));
    }

    /// <summary>
    /// Disaggregated serving in miniature: engine A prefills, exports; engine B (another transformer, block size and
    /// block ids) imports and both greedy-decode 16 tokens: the same tokens and the same logit bits at every step.
    /// </summary>
    [Theory]
    [InlineData("llama", 4, 16, KvCacheDtype.F32)]
    [InlineData("qwen3", 16, 1, KvCacheDtype.F32)]
    [InlineData("llama", 4, 16, KvCacheDtype.F16)]
    [InlineData("qwen3", 16, 1, KvCacheDtype.F16)]
    public void Import_PrefillFromAnotherEngine_DecodesBitIdentically(string modelName, int blockSizeA, int blockSizeB, KvCacheDtype dtype)
    {
        string path = BatchTestModels.Path(modelName);
        using var modelA = new Transformer(ModelLoader.Load(path), maxBatch: 16);
        using var modelB = new Transformer(ModelLoader.Load(path), maxBatch: 64);
        int vocab = modelA.Config.VocabSize;
        const int Prompt = 45, Decode = 16;
        var random = new Random(blockSizeA);
        int[] prompt = [.. Enumerable.Range(0, Prompt).Select(_ => random.Next(vocab))];
        int blocksA = (Prompt + Decode + blockSizeA - 1) / blockSizeA, blocksB = (Prompt + Decode + blockSizeB - 1) / blockSizeB;
        var cacheA = new PagedKvCache(modelA.Config, blocksA + 5, blockSizeA, dtype);
        var cacheB = new PagedKvCache(modelB.Config, blocksB + 7, blockSizeB, dtype);
        int[] tableA = [.. Enumerable.Range(0, blocksA + 5).OrderBy(_ => random.Next()).Take(blocksA)];
        int[] tableB = [.. Enumerable.Range(0, blocksB + 7).Reverse().Take(blocksB)];
        var logitsA = new float[vocab];
        var logitsB = new float[vocab];
        modelA.Forward(prompt, [new SequenceSlice(0, Prompt, 0, tableA, true)], cacheA, logitsA);
        var buffer = new byte[cacheA.ExportedBytes(Prompt)];
        cacheA.Export(tableA, Prompt, buffer);
        string wireLayout = cacheA.Layout(Prompt).ToJson();

        cacheB.Import(tableB, KvTransferLayout.FromJson(wireLayout), buffer);

        int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(logitsA);
        var tokensA = new List<int>();
        var tokensB = new List<int>();
        for (int s = 0; s < Decode; s++)
        {
            modelA.Forward([next], [new SequenceSlice(0, 1, Prompt + s, tableA, true)], cacheA, logitsA);
            modelB.Forward([next], [new SequenceSlice(0, 1, Prompt + s, tableB, true)], cacheB, logitsB);
            BatchTestModels.AssertBitIdentical(logitsA, logitsB, $"{modelName}, {dtype} KV, decode step {s}");
            tokensA.Add(System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(logitsA));
            tokensB.Add(System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(logitsB));
            next = tokensA[^1];
        }

        Assert.Equal(tokensA, tokensB);
    }
}

using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;

namespace Dynamo.Tests.Engine.Serving;

/// <summary>The KV pool's sizing rule: the flag, else the model's need (context x sequences x bytes per token) under the memory cap.</summary>
public class KvCacheBudgetTests
{
    private const long Gb24 = 24_000_000_000;

    // The 110m benchmark model: 12 layers, 12 KV heads of 64, f32: 2 x 12 x 768 x 4 = 73,728 bytes per token.
    private const long Token110m = 73_728;

    private static readonly ModelConfig Model110m = new()
    {
        Architecture = "llama", Dim = 768, HiddenDim = 2048, Layers = 12, Heads = 12, KvHeads = 12, HeadDim = 64, VocabSize = 32000, ContextLength = 1024,
    };

    [Theory]
    // --kv-cache-memory decides, whatever the model needs or the memory holds.
    [InlineData(4096L, 16, 2048, 128, 16_000_000L, 0.2, Gb24, 244, KvCacheSizeSource.Flag)]
    [InlineData(Token110m, 16, 1024, 128, 64_000_000_000L, 0.2, 1_000_000L, 54_253, KvCacheSizeSource.Flag)]
    // A small model: its need, far under the cap (8 sequences x 256 tokens = 128 blocks).
    [InlineData(4096L, 16, 256, 8, null, 0.2, Gb24, 128, KvCacheSizeSource.Model)]
    // A context that is not a whole number of blocks: each sequence rounds up (100 tokens -> 7 blocks of 16).
    [InlineData(4096L, 16, 100, 3, null, 0.2, Gb24, 21, KvCacheSizeSource.Model)]
    // Fewer sequences, the same model: the need shrinks with --max-num-seqs (110m, 16 x 1024 tokens = 1,024 blocks).
    [InlineData(Token110m, 16, 1024, 16, null, 0.2, Gb24, 1_024, KvCacheSizeSource.Model)]
    // 110m at the defaults: 128 x 1024 tokens need 9.7 GB, more than 20% of 24 GB: the cap, 4,069 blocks.
    [InlineData(Token110m, 16, 1024, 128, null, 0.2, Gb24, 4_069, KvCacheSizeSource.MemoryCap)]
    // A smaller cap, the same model.
    [InlineData(Token110m, 16, 1024, 128, null, 0.05, Gb24, 1_017, KvCacheSizeSource.MemoryCap)]
    public void Decide_Table_BlocksAndSource(long bytesPerToken, int blockSize, int context, int seqs, long? given, double fraction, long available, int blocks, KvCacheSizeSource source)
    {
        KvCacheBudget budget = KvCacheBudget.Decide(bytesPerToken * blockSize, blockSize, context, seqs, given, fraction, available);

        Assert.Equal(blocks, budget.Blocks);
        Assert.Equal(source, budget.Source);
        Assert.Equal(blocks * bytesPerToken * blockSize, budget.Bytes);
        Assert.Equal(blockSize, budget.BlockSize);
    }

    [Fact]
    public void Decide_Derivation_SaysWhatDecidedWithTheFigures()
    {
        KvCacheBudget model = KvCacheBudget.Decide(4096L * 16, 16, 256, 8, null, 0.2, Gb24);
        KvCacheBudget cap = KvCacheBudget.Decide(Token110m * 16, 16, 1024, 128, null, 0.2, Gb24);
        KvCacheBudget flag = KvCacheBudget.Decide(4096L * 16, 16, 256, 8, 16_000_000, 0.2, Gb24);

        Assert.Equal(
            "8,388,608 bytes = 128 blocks of 16 tokens (65,536 bytes each): the model's need, context 256 x 8 sequences (--max-num-seqs) x 4,096 bytes per token = 8,388,608 bytes; " +
            "under the cap of 0.2 of 24,000,000,000 bytes available = 4,800,000,000 bytes (--mem-fraction-static)",
            model.ToString());
        Assert.Equal(
            "4,799,987,712 bytes = 4,069 blocks of 16 tokens (1,179,648 bytes each): the cap of 0.2 of 24,000,000,000 bytes available = 4,800,000,000 bytes (--mem-fraction-static); " +
            "the model's need is context 1,024 x 128 sequences (--max-num-seqs) x 73,728 bytes per token = 9,663,676,416 bytes",
            cap.ToString());
        Assert.Equal("15,990,784 bytes = 244 blocks of 16 tokens (65,536 bytes each): --kv-cache-memory 16,000,000 bytes", flag.ToString());
    }

    /// <summary>An F16 KV cache (2 bytes an element): the same memory holds twice the tokens, and the line says the element type.</summary>
    [Fact]
    public void Decide_F16Elements_TwiceTheBlocksInTheSameBytesAndSaidSo()
    {
        long f32Block = PagedKvCache.BytesPerBlock(Model110m, 16, KvCacheDtype.F32), f16Block = PagedKvCache.BytesPerBlock(Model110m, 16, KvCacheDtype.F16);
        KvCacheBudget f32 = KvCacheBudget.Decide(f32Block, 16, 1024, 128, null, 0.2, Gb24, elementType: "f32");
        KvCacheBudget f16 = KvCacheBudget.Decide(f16Block, 16, 1024, 128, null, 0.2, Gb24, elementType: "f16");

        Assert.Equal(Token110m * 16, f32Block);
        Assert.Equal(Token110m * 16 / 2, f16Block);
        Assert.Equal(4_069, f32.Blocks);
        Assert.Equal(8_138, f16.Blocks);
        Assert.Equal(f16.Blocks * f16Block, f16.Bytes);
        Assert.StartsWith("4,799,987,712 bytes = 8,138 blocks of 16 tokens (589,824 bytes each, keys and values in f16): the cap of 0.2", f16.ToString());
        Assert.Contains("x 36,864 bytes per token", f16.ToString());
    }

    [Fact]
    public void Decide_MoreBlocksThanOneArrayHolds_LimitedAndSaidSo()
    {
        KvCacheBudget budget = KvCacheBudget.Decide(4096L * 16, 16, 4096, 64, null, 0.5, Gb24, maxBlocks: 1000);

        Assert.Equal(1000, budget.Blocks);
        Assert.EndsWith("limited to 1,000 blocks (the largest array of one layer)", budget.Derivation);
    }

    [Theory]
    [InlineData(1000L, 0.2, Gb24, "--kv-cache-memory: 1000 bytes hold no KV block (65536 bytes each at block size 16)")]
    [InlineData(null, 0.01, 1_000_000L, "--mem-fraction-static: 0.01 of 1,000,000 bytes available = 10,000 bytes hold no KV block")]
    public void Decide_NotOneBlockFits_ArgumentExceptionNamingTheFlag(long? given, double fraction, long available, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => KvCacheBudget.Decide(4096L * 16, 16, 256, 8, given, fraction, available));

        Assert.StartsWith(expected, error.Message);
    }
}

using System.IO.Hashing;
using Dynamo.Llm.Kv;

namespace Dynamo.Tests.Llm.Kv;

public sealed class BlockHasherTests
{
    private const ulong Prime32 = 2654435761;
    private const ulong Prime64 = 11400714785074694797;

    // XXH3_64bits_withSeed over xxHash's sanity buffer, from XSUM_XXH3_testdata in the upstream
    // xxHash repository (cli/xsum_sanity_check.c): the public test vectors of the algorithm.
    public static TheoryData<int, ulong, ulong> OfficialXxh3Vectors => new()
    {
        { 0, 0, 0x2D06800538D394C2 },
        { 0, Prime64, 0xA8A6B918B2F0364A },
        { 1, 0, 0xC44BDFF4074EECDB },
        { 1, Prime64, 0x032BE332DD766EF8 },
        { 6, 0, 0x27B56A84CD2D7325 },
        { 6, Prime64, 0x84589C116AB59AB9 },
        { 12, 0, 0xA713DAF0DFBB77E7 },
        { 12, Prime64, 0xE7303E1B2336DE0E },
        { 24, 0, 0xA3FE70BF9D3510EB },
        { 24, Prime64, 0x850E80FC35BDD690 },
        { 48, 0, 0x397DA259ECBA1F11 },
        { 48, Prime64, 0xADC2CBAA44ACC616 },
        { 80, 0, 0xBCDEFBBB2C47C90A },
        { 80, Prime64, 0xC6DD0CB699532E73 },
        { 195, 0, 0xCD94217EE362EC3A },
        { 195, Prime64, 0xBA68003D370CB3D9 },
    };

    private static byte[] SanityBuffer(int length)
    {
        var buffer = new byte[length];
        ulong byteGen = Prime32;
        for (int i = 0; i < length; i++)
        {
            buffer[i] = (byte)(byteGen >> 56);
            byteGen *= Prime64;
        }

        return buffer;
    }

    private static ulong Xxh3(byte[] bytes) => XxHash3.HashToUInt64(bytes, (long)BlockHasher.Seed);

    [Theory]
    [MemberData(nameof(OfficialXxh3Vectors))]
    public void XxHash3_OfficialSanityVectors_Match(int length, ulong seed, ulong expected)
    {
        Assert.Equal(expected, XxHash3.HashToUInt64(SanityBuffer(length), unchecked((long)seed)));
    }

    [Fact]
    public void XxHash3_EmptyInputSeed1337_Pinned()
    {
        Assert.Equal(0xD1F3E77444430AB9UL, XxHash3.HashToUInt64([], 1337));
    }

    [Fact]
    public void Seed_Is1337()
    {
        Assert.Equal(1337UL, BlockHasher.Seed);
    }

    [Fact]
    public void LocalHash_Tokens_IsXxHash3OfLittleEndianU32Bytes()
    {
        byte[] bytes =
        [
            0x01, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00,
            0x04, 0x03, 0x02, 0x01,
            0xFF, 0xFF, 0xFF, 0xFF,
        ];

        Assert.Equal(Xxh3(bytes), BlockHasher.LocalHash([1, 2, 0x01020304, -1]));
    }

    [Fact]
    public void LocalHash_OneToSixteen_Pinned()
    {
        int[] tokens = Enumerable.Range(1, 16).ToArray();

        Assert.Equal(0xEA06FC71A5EE6E88UL, BlockHasher.LocalHash(tokens));
    }

    [Fact]
    public void LocalHash_Empty_IsXxHash3OfNothing()
    {
        Assert.Equal(0xD1F3E77444430AB9UL, BlockHasher.LocalHash([]));
    }

    [Fact]
    public void LocalHashPortable_EveryLengthTo300_EqualsLocalHash()
    {
        var random = new Random(5);
        for (int length = 0; length <= 300; length++)
        {
            int[] tokens = Enumerable.Range(0, length).Select(_ => random.Next(int.MinValue, int.MaxValue)).ToArray();

            Assert.Equal(BlockHasher.LocalHash(tokens), BlockHasher.LocalHashPortable(tokens));
        }
    }

    [Fact]
    public void SequenceHash_ParentAndLocal_IsXxHash3OfParentThenLocalLittleEndianU64()
    {
        byte[] bytes =
        [
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
            0x10, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09,
        ];

        Assert.Equal(Xxh3(bytes), BlockHasher.SequenceHash(0x0102030405060708, 0x090A0B0C0D0E0F10));
    }

    [Fact]
    public void SequenceHashes_OneToThirtyTwoInBlocksOf16_Pinned()
    {
        int[] tokens = Enumerable.Range(1, 32).ToArray();
        var sequence = new ulong[2];
        var local = new ulong[2];

        BlockHasher.SequenceHashes(tokens, 16, sequence, local);

        // The worked example of Kv/README.md.
        Assert.Equal([0xEA06FC71A5EE6E88UL, 0x1FBF39BD106BE0B5UL], local);
        Assert.Equal([0xEA06FC71A5EE6E88UL, 0xAD01835A37DD294CUL], sequence);
        Assert.Equal(sequence, BlockHasher.SequenceHashes(tokens, 16));
    }

    [Fact]
    public void SequenceHashes_ThreeBlocks_FirstIsLocalThenChained()
    {
        int[] tokens = Enumerable.Range(100, 12).ToArray();
        ulong l0 = BlockHasher.LocalHash(tokens.AsSpan(0, 4));
        ulong l1 = BlockHasher.LocalHash(tokens.AsSpan(4, 4));
        ulong l2 = BlockHasher.LocalHash(tokens.AsSpan(8, 4));
        ulong s1 = BlockHasher.SequenceHash(l0, l1);
        ulong s2 = BlockHasher.SequenceHash(s1, l2);
        var sequence = new ulong[3];
        var local = new ulong[3];

        int blocks = BlockHasher.SequenceHashes(tokens, 4, sequence, local);

        Assert.Equal(3, blocks);
        Assert.Equal([l0, s1, s2], sequence);
        Assert.Equal([l0, l1, l2], local);
    }

    [Fact]
    public void SequenceHashes_PartialTail_Ignored()
    {
        int[] tokens = Enumerable.Range(1, 47).ToArray();
        var sequence = new ulong[5];
        var local = new ulong[5];

        int blocks = BlockHasher.SequenceHashes(tokens, 16, sequence, local);

        Assert.Equal(2, blocks);
        Assert.Equal(BlockHasher.SequenceHashes(tokens.AsSpan(0, 32), 16), sequence[..2]);
        Assert.Equal([0UL, 0UL, 0UL], sequence[2..]);
        Assert.Equal(2, BlockHasher.SequenceHashes(tokens, 16).Length);
    }

    [Fact]
    public void SequenceHashes_FewerTokensThanABlock_Empty()
    {
        Assert.Empty(BlockHasher.SequenceHashes([1, 2, 3], 16));
        Assert.Equal(0, BlockHasher.SequenceHashes([1, 2, 3], 16, [], []));
    }

    [Fact]
    public void SequenceHashes_SameBlockDifferentPrefix_DifferentSequenceHashSameLocalHash()
    {
        int[] a = [1, 2, 3, 4, 9, 9, 9, 9];
        int[] b = [5, 6, 7, 8, 9, 9, 9, 9];
        var sa = new ulong[2];
        var la = new ulong[2];
        var sb = new ulong[2];
        var lb = new ulong[2];

        BlockHasher.SequenceHashes(a, 4, sa, la);
        BlockHasher.SequenceHashes(b, 4, sb, lb);

        Assert.Equal(la[1], lb[1]);
        Assert.NotEqual(sa[1], sb[1]);
    }

    [Fact]
    public void NextSequenceHash_Incremental_EqualsBatch()
    {
        var random = new Random(11);
        int[] tokens = Enumerable.Range(0, 16 * 9 + 5).Select(_ => random.Next(0, 150_000)).ToArray();
        ulong[] batch = BlockHasher.SequenceHashes(tokens, 16);
        var batchLocal = new ulong[batch.Length];
        BlockHasher.SequenceHashes(tokens, 16, new ulong[batch.Length], batchLocal);

        ulong? parent = null;
        for (int i = 0; i < batch.Length; i++)
        {
            ulong next = BlockHasher.NextSequenceHash(parent, tokens.AsSpan(i * 16, 16), out ulong local);

            Assert.Equal(batch[i], next);
            Assert.Equal(batchLocal[i], local);
            parent = next;
        }
    }

    [Fact]
    public void SequenceHashes_BlockSizeBelowOne_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockHasher.SequenceHashes([1, 2], 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockHasher.SequenceHashes([1, 2], -1, new ulong[2], new ulong[2]));
    }

    [Fact]
    public void SequenceHashes_DestinationTooShort_ThrowsNamingIt()
    {
        int[] tokens = Enumerable.Range(0, 8).ToArray();

        ArgumentException sequence = Assert.Throws<ArgumentException>(
            () => BlockHasher.SequenceHashes(tokens, 4, new ulong[1], new ulong[2]));
        ArgumentException local = Assert.Throws<ArgumentException>(
            () => BlockHasher.SequenceHashes(tokens, 4, new ulong[2], new ulong[1]));

        Assert.Equal("sequenceHashes", sequence.ParamName);
        Assert.Equal("localHashes", local.ParamName);
    }
}

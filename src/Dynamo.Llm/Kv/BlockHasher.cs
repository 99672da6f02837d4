using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace Dynamo.Llm.Kv;

/// <summary>
/// The one definition of KV block identity, shared by the engine's block pool, the mocker and the
/// KV-aware router. It is the original NVIDIA Dynamo system's, so KV events from other engines that
/// follow it name the same blocks:
/// <list type="bullet">
/// <item>local hash of a block = XXH3-64 with seed 1337 over the block's token ids, each written as a
/// little-endian u32 (4 bytes per token, in order; no length prefix, no padding);</item>
/// <item>sequence hash of the first block = its local hash;</item>
/// <item>sequence hash of a later block = XXH3-64 with seed 1337 over 16 bytes: the parent block's
/// sequence hash as little-endian u64, then this block's local hash as little-endian u64.</item>
/// </list>
/// Only full blocks have hashes; a partial tail block has none. The sequence hash identifies a block
/// together with its whole prefix, and is the <c>block_hash</c> of KV events; the local hash is their
/// <c>tokens_hash</c>. See Kv/README.md for a worked example of the byte layout.
/// </summary>
public static class BlockHasher
{
    /// <summary>The XXH3-64 seed of every hash here (the original system's <c>XXH3_SEED</c>).</summary>
    public const ulong Seed = 1337;

    private const int StackTokens = 256;

    /// <summary>XXH3-64, seed 1337, over <paramref name="tokens"/> as little-endian u32 values.</summary>
    public static ulong LocalHash(ReadOnlySpan<int> tokens) =>
        BitConverter.IsLittleEndian
            ? XxHash3.HashToUInt64(MemoryMarshal.AsBytes(tokens), (long)Seed)
            : LocalHashPortable(tokens);

    /// <summary>XXH3-64, seed 1337, over 16 bytes: <paramref name="parentSequenceHash"/> then
    /// <paramref name="localHash"/>, each as a little-endian u64.</summary>
    public static ulong SequenceHash(ulong parentSequenceHash, ulong localHash)
    {
        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, parentSequenceHash);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes[8..], localHash);
        return XxHash3.HashToUInt64(bytes, (long)Seed);
    }

    /// <summary>
    /// The hashes of the next block of a sequence: returns its sequence hash (its local hash when
    /// <paramref name="parent"/> is null, i.e. for the first block) and gives its local hash.
    /// </summary>
    public static ulong NextSequenceHash(ulong? parent, ReadOnlySpan<int> blockTokens, out ulong localHash)
    {
        localHash = LocalHash(blockTokens);
        return parent is { } p ? SequenceHash(p, localHash) : localHash;
    }

    /// <summary>
    /// Hashes every full block of <paramref name="tokens"/> (a partial tail is ignored) into the first
    /// entries of <paramref name="sequenceHashes"/> and <paramref name="localHashes"/>; returns the number
    /// of full blocks. Both destinations must hold at least that many.
    /// </summary>
    public static int SequenceHashes(
        ReadOnlySpan<int> tokens, int blockSize, Span<ulong> sequenceHashes, Span<ulong> localHashes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        int blocks = tokens.Length / blockSize;
        if (sequenceHashes.Length < blocks)
        {
            throw new ArgumentException(
                $"sequenceHashes holds {sequenceHashes.Length} entries; {blocks} full blocks need as many.",
                nameof(sequenceHashes));
        }

        if (localHashes.Length < blocks)
        {
            throw new ArgumentException(
                $"localHashes holds {localHashes.Length} entries; {blocks} full blocks need as many.",
                nameof(localHashes));
        }

        ulong? parent = null;
        for (int i = 0; i < blocks; i++)
        {
            ulong sequence = NextSequenceHash(parent, tokens.Slice(i * blockSize, blockSize), out localHashes[i]);
            sequenceHashes[i] = sequence;
            parent = sequence;
        }

        return blocks;
    }

    /// <summary>The sequence hashes of every full block of <paramref name="tokens"/> (a partial tail is ignored).</summary>
    public static ulong[] SequenceHashes(ReadOnlySpan<int> tokens, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        var sequenceHashes = new ulong[tokens.Length / blockSize];
        ulong? parent = null;
        for (int i = 0; i < sequenceHashes.Length; i++)
        {
            ulong sequence = NextSequenceHash(parent, tokens.Slice(i * blockSize, blockSize), out _);
            sequenceHashes[i] = sequence;
            parent = sequence;
        }

        return sequenceHashes;
    }

    /// <summary>
    /// <see cref="LocalHash"/> written out byte by byte, independent of the machine's byte order: the path
    /// big-endian machines take (and a cross-check for the little-endian one).
    /// </summary>
    internal static ulong LocalHashPortable(ReadOnlySpan<int> tokens)
    {
        int length = tokens.Length * sizeof(uint);
        byte[]? rented = null;
        Span<byte> bytes = tokens.Length <= StackTokens
            ? stackalloc byte[StackTokens * sizeof(uint)]
            : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            bytes = bytes[..length];
            for (int i = 0; i < tokens.Length; i++)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(bytes[(i * sizeof(uint))..], (uint)tokens[i]);
            }

            return XxHash3.HashToUInt64(bytes, (long)Seed);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}

using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Dynamo.Engine.Models;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;

namespace Dynamo.Engine.KvCache;

/// <summary>
/// The keys and values of a fixed pool of KV blocks, float32. Per layer one array of keys and one of values,
/// each <c>BlockCount * BlockSize * KvDim</c> floats; token slot (block, offset) starts at
/// <c>((block * BlockSize) + offset) * KvDim</c>, kv head h at <c>+ h * HeadDim</c>. A sequence's position p lives
/// in block <c>blockTable[p / BlockSize]</c> at offset <c>p % BlockSize</c>. Which block belongs to which
/// sequence is the caller's (the block manager's) business; this class only stores. See README.md.
/// </summary>
public sealed class PagedKvCache : IKvTransferStore
{
    private const string Dtype = "f32";

    public PagedKvCache(ModelConfig config, int blockCount, int blockSize)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        Layers = config.Layers;
        KvHeads = config.KvHeads;
        HeadDim = config.HeadDim;
        KvDim = config.KvHeads * config.HeadDim;
        BlockCount = blockCount;
        BlockSize = blockSize;
        long floats = (long)blockCount * blockSize * KvDim;
        if (floats > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(blockCount), $"{blockCount} blocks of {blockSize} tokens x {KvDim} floats need {floats} floats per layer; one array holds at most {Array.MaxLength} (use fewer or smaller blocks)");
        }

        Keys = new float[Layers][];
        Values = new float[Layers][];
        for (int l = 0; l < Layers; l++)
        {
            // Uninitialized: a slot is always written before it is read. Pinned: the forward pass takes pointers every step.
            Keys[l] = GC.AllocateUninitializedArray<float>((int)floats, pinned: true);
            Values[l] = GC.AllocateUninitializedArray<float>((int)floats, pinned: true);
        }
    }

    public int BlockCount { get; }

    /// <summary>Tokens per block.</summary>
    public int BlockSize { get; }

    public int Layers { get; }

    /// <summary>Floats per token per layer for keys (and as many for values): KvHeads x HeadDim.</summary>
    public int KvDim { get; }

    internal int KvHeads { get; }

    internal int HeadDim { get; }

    /// <summary>Per layer: the keys of every slot, [block][offset][kvHead][headDim].</summary>
    internal float[][] Keys { get; }

    /// <summary>Per layer: the values of every slot, laid out as <see cref="Keys"/>.</summary>
    internal float[][] Values { get; }

    /// <summary>Bytes one block of <paramref name="blockSize"/> tokens takes (keys and values of every layer), to turn a memory budget into a block count.</summary>
    public static long BytesPerBlock(ModelConfig config, int blockSize)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        return 2L * config.Layers * blockSize * config.KvHeads * config.HeadDim * sizeof(float);
    }

    /// <summary>The layout <see cref="Export"/> writes for <paramref name="tokenCount"/> tokens.</summary>
    public KvTransferLayout Layout(int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokenCount);
        return new KvTransferLayout
        {
            Layers = Layers,
            KvHeads = KvHeads,
            HeadDim = HeadDim,
            Dtype = Dtype,
            BlockSize = BlockSize,
            TokenCount = tokenCount,
        };
    }

    /// <summary>Bytes <see cref="Export"/> writes for <paramref name="tokenCount"/> tokens.</summary>
    public int ExportedBytes(int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokenCount);
        long bytes = Layout(tokenCount).ByteCount;
        if (bytes > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(tokenCount), $"{tokenCount} tokens export as {bytes} bytes; one buffer holds at most {int.MaxValue}");
        }

        return (int)bytes;
    }

    /// <summary>
    /// Writes the keys and values of positions 0..tokenCount-1 of the sequence whose block table is
    /// <paramref name="blockIds"/> into <paramref name="destination"/>, in the <see cref="KvTransferLayout"/> order:
    /// [layer][keys, then values][token][kvHead][headDim], little-endian float32.
    /// </summary>
    public void Export(ReadOnlySpan<int> blockIds, int tokenCount, Span<byte> destination)
    {
        int bytes = ExportedBytes(tokenCount);
        CheckBlocks(blockIds, tokenCount, nameof(blockIds));
        if (destination.Length < bytes)
        {
            throw new ArgumentException($"{tokenCount} tokens export as {bytes} bytes; the destination has {destination.Length}", nameof(destination));
        }

        Span<float> dst = MemoryMarshal.Cast<byte, float>(destination[..bytes]);
        int perArray = tokenCount * KvDim;
        for (int l = 0; l < Layers; l++)
        {
            Gather(Keys[l], blockIds, tokenCount, dst.Slice(2 * l * perArray, perArray));
            Gather(Values[l], blockIds, tokenCount, dst.Slice((2 * l + 1) * perArray, perArray));
        }

        if (!BitConverter.IsLittleEndian)
        {
            Span<int> words = MemoryMarshal.Cast<float, int>(dst);
            BinaryPrimitives.ReverseEndianness(words, words);
        }
    }

    /// <summary>
    /// Stores the keys and values of <paramref name="layout"/>.TokenCount tokens (positions 0..n-1, as
    /// <see cref="Export"/> wrote them, possibly by an engine with another block size) into the blocks
    /// <paramref name="blockIds"/>. The model shape (layers, kv heads, head dim) and dtype must match this cache's.
    /// </summary>
    public void Import(ReadOnlySpan<int> blockIds, KvTransferLayout layout, ReadOnlySpan<byte> source)
    {
        ArgumentNullException.ThrowIfNull(layout);
        Mismatch("layers", layout.Layers, Layers);
        Mismatch("kv_heads", layout.KvHeads, KvHeads);
        Mismatch("head_dim", layout.HeadDim, HeadDim);
        if (layout.Dtype != Dtype)
        {
            throw new ArgumentException($"KV transfer dtype mismatch: the buffer holds \"{layout.Dtype}\", this cache stores \"{Dtype}\"", nameof(layout));
        }

        if (layout.TokenCount < 0)
        {
            throw new ArgumentException($"KV transfer token_count is {layout.TokenCount}", nameof(layout));
        }

        int tokenCount = layout.TokenCount;
        int bytes = ExportedBytes(tokenCount);
        if (source.Length != bytes)
        {
            throw new ArgumentException($"{tokenCount} tokens of this layout take {bytes} bytes; the source has {source.Length}", nameof(source));
        }

        CheckBlocks(blockIds, tokenCount, nameof(blockIds));
        ReadOnlySpan<float> src = MemoryMarshal.Cast<byte, float>(source);
        float[]? swapped = null;
        if (!BitConverter.IsLittleEndian)
        {
            swapped = new float[src.Length];
            BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<float, int>(src), MemoryMarshal.Cast<float, int>(swapped.AsSpan()));
            src = swapped;
        }

        int perArray = tokenCount * KvDim;
        for (int l = 0; l < Layers; l++)
        {
            Scatter(src.Slice(2 * l * perArray, perArray), blockIds, tokenCount, Keys[l]);
            Scatter(src.Slice((2 * l + 1) * perArray, perArray), blockIds, tokenCount, Values[l]);
        }

        static void Mismatch(string field, int theirs, int ours)
        {
            if (theirs != ours)
            {
                throw new ArgumentException($"KV transfer {field} mismatch: the buffer has {theirs}, this cache has {ours}", nameof(layout));
            }
        }
    }

    /// <summary>The engine's KV transfer: a payload of this cache's model shape and dtype, of the length its layout says.</summary>
    bool IKvTransferStore.CanImport(KvTransferPayload payload)
    {
        KvTransferLayout theirs = payload.Layout;
        return theirs.Layers == Layers && theirs.KvHeads == KvHeads && theirs.HeadDim == HeadDim && theirs.Dtype == Dtype
            && theirs.TokenCount >= 0 && payload.Data.Length == theirs.ByteCount;
    }

    void IKvTransferStore.Import(BlockTable blocks, KvTransferPayload payload) => Import(blocks.AsSpan(), payload.Layout, payload.Data.Span);

    KvTransferPayload IKvTransferStore.Export(BlockTable blocks, int tokenCount)
    {
        var data = new byte[ExportedBytes(tokenCount)];
        Export(blocks.AsSpan(), tokenCount, data);
        return new KvTransferPayload(Layout(tokenCount), data);
    }

    /// <summary>Throws unless <paramref name="blockIds"/> has a valid block for every position 0..tokenCount-1.</summary>
    internal void CheckBlocks(ReadOnlySpan<int> blockIds, int tokenCount, string paramName)
    {
        int needed = (int)(((long)tokenCount + BlockSize - 1) / BlockSize);
        if (blockIds.Length < needed)
        {
            throw new ArgumentException($"{tokenCount} tokens need {needed} blocks of {BlockSize}; the block table has {blockIds.Length}", paramName);
        }

        for (int i = 0; i < needed; i++)
        {
            if ((uint)blockIds[i] >= (uint)BlockCount)
            {
                throw new ArgumentOutOfRangeException(paramName, $"block table entry {i} is block {blockIds[i]}, outside the pool of {BlockCount} blocks");
            }
        }
    }

    /// <summary>Copies the slots of positions 0..tokenCount-1 (contiguous within each block) into token-major order.</summary>
    private void Gather(float[] store, ReadOnlySpan<int> blockIds, int tokenCount, Span<float> destination)
    {
        for (int p = 0, i = 0; p < tokenCount; i++)
        {
            int run = Math.Min(BlockSize, tokenCount - p);
            store.AsSpan(blockIds[i] * BlockSize * KvDim, run * KvDim).CopyTo(destination.Slice(p * KvDim, run * KvDim));
            p += run;
        }
    }

    private void Scatter(ReadOnlySpan<float> source, ReadOnlySpan<int> blockIds, int tokenCount, float[] store)
    {
        for (int p = 0, i = 0; p < tokenCount; i++)
        {
            int run = Math.Min(BlockSize, tokenCount - p);
            source.Slice(p * KvDim, run * KvDim).CopyTo(store.AsSpan(blockIds[i] * BlockSize * KvDim, run * KvDim));
            p += run;
        }
    }
}

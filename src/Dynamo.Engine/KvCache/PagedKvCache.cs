using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Dynamo.Engine.Models;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;

namespace Dynamo.Engine.KvCache;

/// <summary>
/// The keys and values of a fixed pool of KV blocks, of <see cref="Dtype"/> (F32, or F16: rounded when stored). Per
/// layer one array of keys and one of values, each <c>BlockCount * BlockSize * KvDim</c> elements. A block is head-major:
/// kv head h of the token at offset t of block b starts at <c>((b * KvHeads + h) * BlockSize + t) * HeadDim</c>
/// (<see cref="Offset"/>), so one head's keys of a block are one contiguous run that attention streams through. A
/// sequence's position p lives in block <c>blockTable[p / BlockSize]</c> at offset <c>p % BlockSize</c>. Which block
/// belongs to which sequence is the caller's (the block manager's) business; this class only stores. See README.md.
/// </summary>
public sealed unsafe class PagedKvCache : IKvTransferStore
{
    // Per layer a float[] (F32) or a Half[] (F16), pinned.
    private readonly Array[] _keys;
    private readonly Array[] _values;

    /// <summary>
    /// A pool of <paramref name="blockCount"/> blocks of <paramref name="blockSize"/> tokens of <paramref name="config"/>'s
    /// shape; <paramref name="dtype"/>: the element type, F32 (exact) unless given. The serving engine's default is F16
    /// (<see cref="Serving.EngineOptions.KvCacheDtype"/>).
    /// </summary>
    public PagedKvCache(ModelConfig config, int blockCount, int blockSize, KvCacheDtype dtype = KvCacheDtype.F32)
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
        Dtype = Enum.IsDefined(dtype) ? dtype : throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "not a KV cache element type");
        long elements = (long)blockCount * blockSize * KvDim;
        if (elements > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(blockCount), $"{blockCount} blocks of {blockSize} tokens x {KvDim} floats need {elements} elements per layer; one array holds at most {Array.MaxLength} (use fewer or smaller blocks)");
        }

        _keys = new Array[Layers];
        _values = new Array[Layers];
        for (int l = 0; l < Layers; l++)
        {
            // Uninitialized: a slot is always written before it is read. Pinned: the forward pass takes pointers every step.
            _keys[l] = Allocate((int)elements);
            _values[l] = Allocate((int)elements);
        }

        Array Allocate(int n) => dtype == KvCacheDtype.F16
            ? GC.AllocateUninitializedArray<Half>(n, pinned: true)
            : GC.AllocateUninitializedArray<float>(n, pinned: true);
    }

    public int BlockCount { get; }

    /// <summary>Tokens per block.</summary>
    public int BlockSize { get; }

    public int Layers { get; }

    /// <summary>Elements per token per layer for keys (and as many for values): KvHeads x HeadDim.</summary>
    public int KvDim { get; }

    /// <summary>The element type keys and values are stored in (and exported as).</summary>
    public KvCacheDtype Dtype { get; }

    internal int KvHeads { get; }

    internal int HeadDim { get; }

    /// <summary>Layer <paramref name="layer"/>'s keys of every slot, [block][offset][kvHead][headDim]; <typeparamref name="T"/> is float (F32) or Half (F16).</summary>
    internal Span<T> Keys<T>(int layer) where T : unmanaged => ((T[])_keys[layer]).AsSpan();

    /// <summary>Layer <paramref name="layer"/>'s values, laid out as <see cref="Keys{T}"/>.</summary>
    internal Span<T> Values<T>(int layer) where T : unmanaged => ((T[])_values[layer]).AsSpan();

    /// <summary>Where kv head <paramref name="kvHead"/> of the token at <paramref name="offset"/> of block <paramref name="block"/> starts, in elements of a layer's array.</summary>
    internal long Offset(int block, int offset, int kvHead) => (((long)block * KvHeads + kvHead) * BlockSize + offset) * HeadDim;

    /// <summary>
    /// Whether an F16 cache may hold an infinity or a NaN: set (for good) when a pass stores a key or value that rounds
    /// to none of the finite halves, or an import brings one. While it is false attention reads the halves without
    /// testing each group for them (<see cref="Kernels.F16ScaledKvElement"/>).
    /// </summary>
    internal bool HoldsNonFinite => _nonFinite;

    private volatile bool _nonFinite;

    /// <summary>Records that <paramref name="stored"/>, about to be stored as halves, has a value no finite half holds (an F16 cache only).</summary>
    internal void NoteStored(ReadOnlySpan<float> stored)
    {
        if (Dtype == KvCacheDtype.F16 && !_nonFinite && !FitsHalf(stored))
        {
            _nonFinite = true;
        }
    }

    /// <summary>Whether every value rounds to a finite half: |x| below 65520 (from there round to nearest gives infinity), no NaN.</summary>
    internal static bool FitsHalf(ReadOnlySpan<float> values) => values.IsEmpty || MathF.Abs(TensorPrimitives.MaxMagnitude(values)) < 65520f;

    /// <summary>Whether every half is finite (its exponent field is not all ones).</summary>
    internal static bool AllFinite(ReadOnlySpan<Half> values)
    {
        ReadOnlySpan<ushort> bits = MemoryMarshal.Cast<Half, ushort>(values);
        var mask = Vector256.Create((ushort)0x7C00);
        int i = 0;
        for (; i + 16 <= bits.Length; i += 16)
        {
            if (Vector256.EqualsAny(Vector256.Create(bits.Slice(i, 16)) & mask, mask))
            {
                return false;
            }
        }

        for (; i < bits.Length; i++)
        {
            if ((bits[i] & 0x7C00) == 0x7C00)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The first element of layer <paramref name="layer"/>'s keys (the arrays are pinned: valid as long as the cache lives).</summary>
    internal void* KeyData(int layer) => Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_keys[layer]));

    /// <summary>The first element of layer <paramref name="layer"/>'s values.</summary>
    internal void* ValueData(int layer) => Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_values[layer]));

    /// <summary>
    /// Bytes one block of <paramref name="blockSize"/> tokens takes (keys and values of every layer, in
    /// <paramref name="dtype"/>), to turn a memory budget into a block count.
    /// </summary>
    public static long BytesPerBlock(ModelConfig config, int blockSize, KvCacheDtype dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        return 2L * config.Layers * blockSize * config.KvHeads * config.HeadDim * dtype.ElementBytes();
    }

    /// <summary>The layout <see cref="Export"/> writes for <paramref name="tokenCount"/> tokens (of this cache's dtype).</summary>
    public KvTransferLayout Layout(int tokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokenCount);
        return new KvTransferLayout
        {
            Layers = Layers,
            KvHeads = KvHeads,
            HeadDim = HeadDim,
            Dtype = Dtype.Name(),
            BlockSize = BlockSize,
            TokenCount = tokenCount,
        };
    }

    /// <summary>Bytes <see cref="Export"/> writes for <paramref name="tokenCount"/> tokens.</summary>
    public int ExportedBytes(int tokenCount) => Bytes(Layout(tokenCount), nameof(tokenCount));

    /// <summary>
    /// Writes the keys and values of positions 0..tokenCount-1 of the sequence whose block table is
    /// <paramref name="blockIds"/> into <paramref name="destination"/>, in the <see cref="KvTransferLayout"/> order:
    /// [layer][keys, then values][token][kvHead][headDim], little-endian, in this cache's dtype (the stored bits).
    /// </summary>
    public void Export(ReadOnlySpan<int> blockIds, int tokenCount, Span<byte> destination)
    {
        int bytes = ExportedBytes(tokenCount);
        CheckBlocks(blockIds, tokenCount, nameof(blockIds));
        if (destination.Length < bytes)
        {
            throw new ArgumentException($"{tokenCount} tokens export as {bytes} bytes; the destination has {destination.Length}", nameof(destination));
        }

        destination = destination[..bytes];
        int perArray = tokenCount * KvDim;
        for (int l = 0; l < Layers; l++)
        {
            if (Dtype == KvCacheDtype.F16)
            {
                Span<Half> dst = MemoryMarshal.Cast<byte, Half>(destination);
                Gather(Keys<Half>(l), blockIds, tokenCount, dst.Slice(2 * l * perArray, perArray));
                Gather(Values<Half>(l), blockIds, tokenCount, dst.Slice((2 * l + 1) * perArray, perArray));
            }
            else
            {
                Span<float> dst = MemoryMarshal.Cast<byte, float>(destination);
                Gather(Keys<float>(l), blockIds, tokenCount, dst.Slice(2 * l * perArray, perArray));
                Gather(Values<float>(l), blockIds, tokenCount, dst.Slice((2 * l + 1) * perArray, perArray));
            }
        }

        if (!BitConverter.IsLittleEndian)
        {
            ReverseEndianness(destination, Dtype.ElementBytes());
        }
    }

    /// <summary>
    /// Stores the keys and values of <paramref name="layout"/>.TokenCount tokens (positions 0..n-1, as
    /// <see cref="Export"/> wrote them, possibly by an engine with another block size or dtype) into the blocks
    /// <paramref name="blockIds"/>. The model shape (layers, kv heads, head dim) must match this cache's; a buffer of the
    /// other dtype is converted (f32 into an F16 cache: rounded to nearest, as a pass stores; f16 into an F32 cache:
    /// exact), any other dtype is refused.
    /// </summary>
    public void Import(ReadOnlySpan<int> blockIds, KvTransferLayout layout, ReadOnlySpan<byte> source)
    {
        ArgumentNullException.ThrowIfNull(layout);
        Mismatch("layers", layout.Layers, Layers);
        Mismatch("kv_heads", layout.KvHeads, KvHeads);
        Mismatch("head_dim", layout.HeadDim, HeadDim);
        if (!IsKnownDtype(layout.Dtype))
        {
            throw new ArgumentException($"KV transfer dtype \"{layout.Dtype}\" is not one this cache reads (\"f32\" or \"f16\"; it stores \"{Dtype.Name()}\")", nameof(layout));
        }

        if (layout.TokenCount < 0)
        {
            throw new ArgumentException($"KV transfer token_count is {layout.TokenCount}", nameof(layout));
        }

        KvCacheDtype theirs = KvCacheDtypes.Parse(layout.Dtype);
        int tokenCount = layout.TokenCount;
        int bytes = Bytes(layout, nameof(layout));
        if (source.Length != bytes)
        {
            throw new ArgumentException($"{tokenCount} tokens of this layout take {bytes} bytes; the source has {source.Length}", nameof(source));
        }

        CheckBlocks(blockIds, tokenCount, nameof(blockIds));
        byte[]? swapped = null;
        if (!BitConverter.IsLittleEndian)
        {
            swapped = source.ToArray();
            ReverseEndianness(swapped, theirs.ElementBytes());
            source = swapped;
        }

        if (Dtype == KvCacheDtype.F16 && !_nonFinite
            && !(theirs == KvCacheDtype.F16 ? AllFinite(MemoryMarshal.Cast<byte, Half>(source)) : FitsHalf(MemoryMarshal.Cast<byte, float>(source))))
        {
            _nonFinite = true;
        }

        int perArray = tokenCount * KvDim;
        for (int l = 0; l < Layers; l++)
        {
            switch (theirs, Dtype)
            {
                case (KvCacheDtype.F32, KvCacheDtype.F32):
                    Scatter(MemoryMarshal.Cast<byte, float>(source), l, perArray, blockIds, tokenCount, Keys<float>(l), Values<float>(l), static (s, d) => s.CopyTo(d));
                    break;
                case (KvCacheDtype.F16, KvCacheDtype.F16):
                    Scatter(MemoryMarshal.Cast<byte, Half>(source), l, perArray, blockIds, tokenCount, Keys<Half>(l), Values<Half>(l), static (s, d) => s.CopyTo(d));
                    break;
                case (KvCacheDtype.F32, KvCacheDtype.F16):
                    Scatter(MemoryMarshal.Cast<byte, float>(source), l, perArray, blockIds, tokenCount, Keys<Half>(l), Values<Half>(l), static (s, d) => TensorPrimitives.ConvertToHalf(s, d));
                    break;
                default:
                    Scatter(MemoryMarshal.Cast<byte, Half>(source), l, perArray, blockIds, tokenCount, Keys<float>(l), Values<float>(l), static (s, d) => TensorPrimitives.ConvertToSingle(s, d));
                    break;
            }
        }

        static void Mismatch(string field, int theirs, int ours)
        {
            if (theirs != ours)
            {
                throw new ArgumentException($"KV transfer {field} mismatch: the buffer has {theirs}, this cache has {ours}", nameof(layout));
            }
        }
    }

    /// <summary>
    /// The engine's KV transfer: a payload of this cache's model shape, of f32 or f16 (another than this cache's is
    /// converted), of the length its layout says.
    /// </summary>
    bool IKvTransferStore.CanImport(KvTransferPayload payload)
    {
        KvTransferLayout theirs = payload.Layout;
        return theirs.Layers == Layers && theirs.KvHeads == KvHeads && theirs.HeadDim == HeadDim && IsKnownDtype(theirs.Dtype)
            && theirs.TokenCount >= 0 && payload.Data.Length == theirs.ByteCount;
    }

    void IKvTransferStore.Import(BlockTable blocks, KvTransferPayload payload) => Import(blocks.AsSpan(), payload.Layout, payload.Data.Span);

    KvTransferPayload IKvTransferStore.Export(BlockTable blocks, int tokenCount)
    {
        var data = new byte[ExportedBytes(tokenCount)];
        Export(blocks.AsSpan(), tokenCount, data);
        return new KvTransferPayload(Layout(tokenCount), data);
    }

    /// <summary>Whether <paramref name="dtype"/> is a KV transfer dtype a cache reads: "f32" or "f16".</summary>
    internal static bool IsKnownDtype(string dtype) => KvCacheDtypes.TryParse(dtype, out KvCacheDtype d) && dtype == d.Name();

    /// <summary>
    /// A whole payload's elements converted to <paramref name="to"/> (the same payload when it already is): what a
    /// tensor-parallel engine's rank 0 does before handing an import of the other dtype to its ranks.
    /// </summary>
    internal static KvTransferPayload Convert(KvTransferPayload payload, KvCacheDtype to)
    {
        KvTransferLayout layout = payload.Layout;
        if (layout.Dtype == to.Name())
        {
            return payload;
        }

        if (!IsKnownDtype(layout.Dtype))
        {
            throw new ArgumentException($"KV transfer dtype \"{layout.Dtype}\" is not one this cache reads (\"f32\" or \"f16\"; it stores \"{to.Name()}\")", nameof(payload));
        }

        KvTransferLayout converted = layout with { Dtype = to.Name() };
        var data = new byte[checked((int)converted.ByteCount)];
        ReadOnlySpan<byte> source = payload.Data.Span;
        if (!BitConverter.IsLittleEndian)
        {
            byte[] swapped = source.ToArray();
            ReverseEndianness(swapped, layout.ElementBytes);
            source = swapped;
        }

        if (to == KvCacheDtype.F16)
        {
            TensorPrimitives.ConvertToHalf(MemoryMarshal.Cast<byte, float>(source), MemoryMarshal.Cast<byte, Half>(data.AsSpan()));
        }
        else
        {
            TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), MemoryMarshal.Cast<byte, float>(data.AsSpan()));
        }

        if (!BitConverter.IsLittleEndian)
        {
            ReverseEndianness(data, converted.ElementBytes);
        }

        return new KvTransferPayload(converted, data);
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

    private static int Bytes(KvTransferLayout layout, string paramName)
    {
        long bytes = layout.ByteCount;
        if (bytes > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(paramName, $"{layout.TokenCount} tokens export as {bytes} bytes; one buffer holds at most {int.MaxValue}");
        }

        return (int)bytes;
    }

    private static void ReverseEndianness(Span<byte> data, int elementBytes)
    {
        if (elementBytes == 2)
        {
            Span<short> halves = MemoryMarshal.Cast<byte, short>(data);
            BinaryPrimitives.ReverseEndianness(halves, halves);
        }
        else
        {
            Span<int> words = MemoryMarshal.Cast<byte, int>(data);
            BinaryPrimitives.ReverseEndianness(words, words);
        }
    }

    /// <summary>Copies the slots of positions 0..tokenCount-1 (head-major within each block) into token-major order.</summary>
    private void Gather<T>(ReadOnlySpan<T> store, ReadOnlySpan<int> blockIds, int tokenCount, Span<T> destination)
    {
        for (int p = 0, i = 0; p < tokenCount; i++)
        {
            int run = Math.Min(BlockSize, tokenCount - p);
            for (int h = 0; h < KvHeads; h++)
            {
                for (int t = 0; t < run; t++)
                {
                    store.Slice((int)Offset(blockIds[i], t, h), HeadDim).CopyTo(destination.Slice((p + t) * KvDim + h * HeadDim, HeadDim));
                }
            }

            p += run;
        }
    }

    /// <summary>Stores layer <paramref name="layer"/>'s keys and values of the token-major <paramref name="source"/> into their slots, each token's head through <paramref name="store"/> (a copy or a conversion).</summary>
    private void Scatter<TFrom, TTo>(
        ReadOnlySpan<TFrom> source, int layer, int perArray, ReadOnlySpan<int> blockIds, int tokenCount, Span<TTo> keys, Span<TTo> values, StoreRun<TFrom, TTo> store)
    {
        for (int kind = 0; kind < 2; kind++)
        {
            ReadOnlySpan<TFrom> from = source.Slice((2 * layer + kind) * perArray, perArray);
            Span<TTo> to = kind == 0 ? keys : values;
            for (int p = 0, i = 0; p < tokenCount; i++)
            {
                int run = Math.Min(BlockSize, tokenCount - p);
                for (int h = 0; h < KvHeads; h++)
                {
                    for (int t = 0; t < run; t++)
                    {
                        store(from.Slice((p + t) * KvDim + h * HeadDim, HeadDim), to.Slice((int)Offset(blockIds[i], t, h), HeadDim));
                    }
                }

                p += run;
            }
        }
    }

    private delegate void StoreRun<TFrom, TTo>(ReadOnlySpan<TFrom> source, Span<TTo> destination);
}

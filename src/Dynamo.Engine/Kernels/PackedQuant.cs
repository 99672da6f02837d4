using Dynamo.Engine.Models;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Kernels;

/// <summary>
/// A Q8_0 or Q4_0 weight matrix repacked once (the mapped file stays untouched) for the register-tiled
/// integer kernels of <see cref="PackedQuantKernel"/>: rows in groups of <see cref="GroupRows"/>, each output lane
/// of a 512-bit vector one row, so that a product needs no horizontal sum and a block's scales are one vector.
/// <para>Layout: group g (rows 16g..16g+15, the last one padded with zero rows), block k (32 columns): the quants at
/// <c>Data + (g * Blocks + k) * BlockBytes</c> (64-byte aligned) in 4-byte slices, 16 rows side by side per 64 bytes;
/// the 16 rows' fp16 scales, as the file stores them, at <c>Scales + (g * Blocks + k) * 16</c>. No byte more than the
/// file's: decode reads memory at the file's size.</para>
/// <list type="bullet">
/// <item>Q8_0: 8 slices of 64 bytes; slice s holds row r's values 4s..4s+3 at byte 4r (512 bytes a block).</item>
/// <item>Q4_0: 4 slices of 64 bytes; slice s holds row r's original bytes 4s..4s+3 at byte 4r, whose low nibbles
/// are the values 4s..4s+3 and high nibbles the values 16+4s..16+4s+3 (256 bytes a block).</item>
/// </list>
/// Padding rows have zero quants and the scale 1.0 (a normal half, so the kernels' fast scale conversion applies).
/// Created on a tensor's first product (<see cref="Of"/>) and kept with it; the memory is a pinned array the
/// garbage collector frees with the tensor.
/// </summary>
internal sealed unsafe class PackedQuant
{
    public const int GroupRows = 16;

    private readonly byte[] _buffer;

    private PackedQuant(Tensor w)
    {
        Type = w.Type;
        Rows = w.Rows;
        Cols = w.Cols;
        Blocks = Cols / 32;
        Groups = (Rows + GroupRows - 1) / GroupRows;
        BlockBytes = BytesPerBlock(Type);
        long quants = (long)Groups * Blocks * BlockBytes, scales = (long)Groups * Blocks * GroupRows * 2;
        _buffer = GC.AllocateUninitializedArray<byte>((int)checked(quants + scales + 64), pinned: true);
        fixed (byte* p = _buffer)
        {
            // 64-byte aligned: every slice load is one aligned cache line.
            Data = (byte*)(((nint)p + 63) & ~(nint)63);
        }

        Scales = (ushort*)(Data + quants);

        Pack(w);
    }

    public GgmlType Type { get; }
    public int Rows { get; }
    public int Cols { get; }
    public int Blocks { get; }
    public int Groups { get; }
    public int BlockBytes { get; }
    public byte* Data { get; }

    /// <summary>The fp16 scales, 16 per group and block.</summary>
    public ushort* Scales { get; }

    /// <summary>Whether <paramref name="type"/> has a packed layout.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.Q8_0 or GgmlType.Q4_0;

    /// <summary>Packed quant bytes of one block of one group.</summary>
    public static int BytesPerBlock(GgmlType type) => type == GgmlType.Q8_0 ? 8 * 64 : 4 * 64;

    /// <summary>The quants of group <paramref name="g"/>'s first block.</summary>
    public byte* Group(int g) => Data + (long)g * Blocks * BlockBytes;

    /// <summary>The scales of group <paramref name="g"/>'s first block.</summary>
    public ushort* GroupScales(int g) => Scales + (long)g * Blocks * GroupRows;

    /// <summary>The packed copy of <paramref name="w"/>, made on first use (racing callers may both pack; one copy wins).</summary>
    public static PackedQuant Of(Tensor w)
    {
        if (w.Packed is PackedQuant packed)
        {
            return packed;
        }

        var made = new PackedQuant(w);
        return (PackedQuant?)Interlocked.CompareExchange(ref w.Packed, made, null) ?? made;
    }

    private void Pack(Tensor w)
    {
        int srcBlock = Type == GgmlType.Q8_0 ? 34 : 18;
        int slices = Type == GgmlType.Q8_0 ? 8 : 4;
        long rowBytes = (long)Blocks * srcBlock;
        for (int g = 0; g < Groups; g++)
        {
            for (int k = 0; k < Blocks; k++)
            {
                byte* dst = Group(g) + (long)k * BlockBytes;
                ushort* scales = GroupScales(g) + (long)k * GroupRows;
                for (int r = 0; r < GroupRows; r++)
                {
                    int row = g * GroupRows + r;
                    if (row >= Rows)
                    {
                        // Padding rows: zero quants, scale 1.0; their lanes are never stored.
                        scales[r] = 0x3C00;
                        for (int s = 0; s < slices; s++)
                        {
                            *(uint*)(dst + s * 64 + r * 4) = 0;
                        }

                        continue;
                    }

                    byte* blk = w.Data + row * rowBytes + (long)k * srcBlock;
                    scales[r] = *(ushort*)blk;
                    for (int s = 0; s < slices; s++)
                    {
                        *(uint*)(dst + s * 64 + r * 4) = *(uint*)(blk + 2 + s * 4);
                    }
                }
            }
        }
    }
}

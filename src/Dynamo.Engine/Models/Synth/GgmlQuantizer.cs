using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// Float32 to GGML tensor types, value for value as ggml's reference quantizers (ggml-quants.c
/// quantize_row_q8_0_ref / quantize_row_q4_0_ref) and its FP32→FP16 conversion (round to nearest even).
/// Lengths must be whole blocks (32 values for Q8_0 and Q4_0); destinations exactly
/// <see cref="GgmlTypeInfo.ByteSize"/> bytes; block scales are little-endian FP16.
/// </summary>
public static class GgmlQuantizer
{
    private const int QK = 32;

    /// <summary>The types <see cref="Quantize"/> writes.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q4_0;

    /// <summary>Converts <paramref name="x"/> to <paramref name="type"/> (F32, F16, BF16, Q8_0, Q4_0).</summary>
    public static void Quantize(GgmlType type, ReadOnlySpan<float> x, Span<byte> destination)
    {
        switch (type)
        {
            case GgmlType.F32:
                CheckLength(type, x, destination);
                MemoryMarshal.AsBytes(x).CopyTo(destination);
                break;
            case GgmlType.F16:
                ToF16(x, destination);
                break;
            case GgmlType.BF16:
                ToBF16(x, destination);
                break;
            case GgmlType.Q8_0:
                QuantizeQ8_0(x, destination);
                break;
            case GgmlType.Q4_0:
                QuantizeQ4_0(x, destination);
                break;
            default:
                throw new NotSupportedException($"cannot write tensor type {type}");
        }
    }

    /// <summary>
    /// Q8_0: per block of 32, d = max|x| / 127, q = round-half-away-from-zero(x / d) (x * (1/d) in float, as ggml),
    /// stored as fp16 d then 32 int8.
    /// </summary>
    public static void QuantizeQ8_0(ReadOnlySpan<float> x, Span<byte> destination)
    {
        CheckLength(GgmlType.Q8_0, x, destination);
        for (int b = 0; b < x.Length / QK; b++)
        {
            ReadOnlySpan<float> block = x.Slice(b * QK, QK);
            Span<byte> y = destination.Slice(b * 34, 34);
            float amax = 0f;
            foreach (float v in block)
            {
                amax = MathF.Max(amax, MathF.Abs(v));
            }

            float d = amax / 127f;
            float id = d != 0f ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);
            for (int j = 0; j < QK; j++)
            {
                y[2 + j] = (byte)(sbyte)MathF.Round(block[j] * id, MidpointRounding.AwayFromZero);
            }
        }
    }

    /// <summary>
    /// Q4_0: per block of 32, m = the value of largest magnitude (sign kept, first one on ties), d = m / -8,
    /// q = min(15, trunc(x * (1/d) + 8.5)); byte j holds element j in its low nibble and element j + 16 in its high
    /// nibble; stored as fp16 d then 16 bytes.
    /// </summary>
    public static void QuantizeQ4_0(ReadOnlySpan<float> x, Span<byte> destination)
    {
        CheckLength(GgmlType.Q4_0, x, destination);
        for (int b = 0; b < x.Length / QK; b++)
        {
            ReadOnlySpan<float> block = x.Slice(b * QK, QK);
            Span<byte> y = destination.Slice(b * 18, 18);
            float amax = 0f, max = 0f;
            foreach (float v in block)
            {
                if (amax < MathF.Abs(v))
                {
                    amax = MathF.Abs(v);
                    max = v;
                }
            }

            float d = max / -8f;
            float id = d != 0f ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);
            for (int j = 0; j < QK / 2; j++)
            {
                int lo = Math.Min(15, (int)(sbyte)((block[j] * id) + 8.5f));
                int hi = Math.Min(15, (int)(sbyte)((block[j + (QK / 2)] * id) + 8.5f));
                y[2 + j] = (byte)(lo | (hi << 4));
            }
        }
    }

    /// <summary>IEEE half precision, round to nearest even (as ggml's FP32→FP16 and numpy/torch).</summary>
    public static void ToF16(ReadOnlySpan<float> x, Span<byte> destination)
    {
        CheckLength(GgmlType.F16, x, destination);
        Span<Half> halves = MemoryMarshal.Cast<byte, Half>(destination);
        for (int i = 0; i < x.Length; i++)
        {
            halves[i] = (Half)x[i];
        }
    }

    /// <summary>bfloat16, round to nearest even (as torch's float→bfloat16); NaN becomes 0x7FC0.</summary>
    public static void ToBF16(ReadOnlySpan<float> x, Span<byte> destination)
    {
        CheckLength(GgmlType.BF16, x, destination);
        Span<ushort> words = MemoryMarshal.Cast<byte, ushort>(destination);
        for (int i = 0; i < x.Length; i++)
        {
            words[i] = ToBF16(x[i]);
        }
    }

    /// <summary>One float to bfloat16 bits, round to nearest even.</summary>
    public static ushort ToBF16(float value)
    {
        if (float.IsNaN(value))
        {
            return 0x7FC0;
        }

        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint roundingBias = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + roundingBias) >> 16);
    }

    private static void CheckLength(GgmlType type, ReadOnlySpan<float> x, Span<byte> destination)
    {
        int block = GgmlTypeInfo.BlockSize(type);
        if (x.Length % block != 0)
        {
            throw new ArgumentException($"{type}: {x.Length} values is not a whole number of blocks of {block}", nameof(x));
        }

        long needed = GgmlTypeInfo.ByteSize(type, x.Length);
        if (destination.Length != needed)
        {
            throw new ArgumentException($"{type}: destination of {destination.Length} bytes, {needed} needed", nameof(destination));
        }
    }
}

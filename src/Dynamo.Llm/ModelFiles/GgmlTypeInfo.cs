namespace Dynamo.Llm.ModelFiles;

/// <summary>Block geometry of each tensor type: elements per block and bytes per block.</summary>
public static class GgmlTypeInfo
{
    /// <summary>Elements per block (1 for plain types).</summary>
    public static int BlockSize(GgmlType type) => type switch
    {
        GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64 or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64 => 1,
        GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.IQ4_NL => 32,
        _ => 256,
    };

    /// <summary>Bytes per block, or null for a type this project cannot size.</summary>
    public static int? TypeSize(GgmlType type) => type switch
    {
        GgmlType.F32 => 4,
        GgmlType.F16 => 2,
        GgmlType.BF16 => 2,
        GgmlType.F64 => 8,
        GgmlType.I8 => 1,
        GgmlType.I16 => 2,
        GgmlType.I32 => 4,
        GgmlType.I64 => 8,
        GgmlType.Q4_0 => 2 + 16,
        GgmlType.Q4_1 => 2 + 2 + 16,
        GgmlType.Q5_0 => 2 + 4 + 16,
        GgmlType.Q5_1 => 2 + 2 + 4 + 16,
        GgmlType.Q8_0 => 2 + 32,
        GgmlType.Q8_1 => 4 + 4 + 32,
        GgmlType.Q2_K => 256 / 16 + 256 / 4 + 2 + 2,
        GgmlType.Q3_K => 256 / 8 + 256 / 4 + 12 + 2,
        GgmlType.Q4_K => 2 + 2 + 12 + 256 / 2,
        GgmlType.Q5_K => 2 + 2 + 12 + 256 / 8 + 256 / 2,
        GgmlType.Q6_K => 256 / 2 + 256 / 4 + 256 / 16 + 2,
        GgmlType.Q8_K => 4 + 256 + 256 / 16 * 2,
        GgmlType.IQ4_NL => 2 + 16,
        _ => null,
    };

    /// <summary>Bytes taken by <paramref name="elements"/> values of <paramref name="type"/> (a whole number of blocks).</summary>
    public static long ByteSize(GgmlType type, long elements)
    {
        int block = BlockSize(type);
        int size = TypeSize(type) ?? throw new NotSupportedException($"tensor type {type} has no known size");
        return elements / block * size;
    }
}

using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models;

/// <summary>
/// A read-only weight tensor in a (usually memory-mapped) buffer that outlives it.
/// Dimensions are in ggml order: <c>Dims[0]</c> is the innermost (contiguous) one, so a weight
/// matrix of a linear layer y = W x has <c>Dims = [in, out]</c>: <see cref="Cols"/> = in, <see cref="Rows"/> = out.
/// </summary>
public sealed unsafe class Tensor
{
    public Tensor(string name, GgmlType type, long[] dims, byte* data, long byteLength)
    {
        Name = name;
        Type = type;
        Dims = dims;
        Data = data;
        ByteLength = byteLength;
    }

    public string Name { get; }
    public GgmlType Type { get; }
    public long[] Dims { get; }
    public byte* Data { get; }
    public long ByteLength { get; }

    /// <summary>
    /// The kernels' repacked copy of this matrix (Kernels/PackedQuant), made on first use and kept as long as the
    /// tensor; null until then. A field so that it can be set with one compare-exchange.
    /// </summary>
    internal object? Packed;

    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (long d in Dims)
            {
                n *= d;
            }

            return n;
        }
    }

    /// <summary>Length of the innermost dimension.</summary>
    public int Cols => (int)Dims[0];

    /// <summary>Product of every dimension but the innermost.</summary>
    public int Rows => (int)(ElementCount / Dims[0]);

    public override string ToString() => $"{Name} {Type} [{string.Join(", ", Dims)}]";
}

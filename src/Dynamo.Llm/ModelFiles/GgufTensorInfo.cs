namespace Dynamo.Llm.ModelFiles;

/// <summary>
/// One tensor of a GGUF file as its header describes it. <see cref="Dims"/> are in ggml order
/// (innermost first); <see cref="Offset"/> is relative to the file's data section.
/// <see cref="ByteSize"/> is null for a type whose block size this project does not know.
/// </summary>
public sealed record GgufTensorInfo(string Name, GgmlType Type, long[] Dims, long Offset, long? ByteSize)
{
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
}

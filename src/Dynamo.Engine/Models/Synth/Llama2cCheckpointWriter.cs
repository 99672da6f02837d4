using System.Runtime.InteropServices;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// Writes a synthetic model as a llama2.c legacy checkpoint (float32): header of 7 int32 (dim, hidden_dim,
/// n_layers, n_heads, n_kv_heads, vocab_size — negated when the classifier is untied — and seq_len), then every
/// tensor of <see cref="SynthModelLayout.Tensors"/> in order, streamed in chunks.
/// </summary>
public static class Llama2cCheckpointWriter
{
    /// <summary>Floats generated per chunk (4 MiB).</summary>
    public const int ChunkFloats = 1 << 20;

    /// <summary>Writes the checkpoint; returns the number of bytes written.</summary>
    public static long Write(SynthModelLayout layout, Stream output)
    {
        SynthModelOptions o = layout.Options;
        Span<int> header = [o.Dim, o.HiddenDim, o.Layers, o.Heads, o.KvHeads, o.Tied ? o.VocabSize : -o.VocabSize, o.ContextLength];
        output.Write(MemoryMarshal.AsBytes(header));
        long bytes = header.Length * sizeof(int);
        var buffer = new float[ChunkFloats];
        foreach (SynthTensor tensor in layout.Tensors)
        {
            layout.Stream(tensor, buffer, (chunk, _) => output.Write(MemoryMarshal.AsBytes(chunk)));
            bytes += tensor.ElementCount * sizeof(float);
        }

        output.Flush();
        return bytes;
    }
}

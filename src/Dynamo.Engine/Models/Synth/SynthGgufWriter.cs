using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// Writes a synthetic model as a llama-architecture GGUF v3 file: the metadata llama.cpp needs, the vocabulary
/// as a "llama" SentencePiece tokenizer, and the tensors under llama.cpp names in ggml dim order [in, out].
/// 2-D weight matrices get <c>matrixType</c> (every one of them, token_embd and output included: for Q4_0 this
/// is llama-quantize's "--pure" layout, whose default mix would store output.weight as Q6_K); the RMS norm
/// vectors stay F32. The weights are those of the llama2.c checkpoint as they are: llama2.c's interleaved RoPE
/// pairing is what llama-arch GGUF expects, so wq/wk are not permuted.
/// </summary>
public static class SynthGgufWriter
{
    /// <summary>Writes the file; returns the number of bytes written.</summary>
    public static long Write(SynthModelLayout layout, SynthVocabulary vocabulary, GgmlType matrixType, Stream output)
    {
        SynthModelOptions o = layout.Options;
        if (vocabulary.Count != o.VocabSize)
        {
            throw new ArgumentException($"the tokenizer has {vocabulary.Count} pieces, --vocab is {o.VocabSize}");
        }

        int block = GgmlTypeInfo.BlockSize(matrixType);
        if (!GgmlQuantizer.IsSupported(matrixType) || matrixType == GgmlType.BF16)
        {
            throw new ArgumentException($"--type {matrixType} is not supported for GGUF (F32, F16, Q8_0, Q4_0)");
        }

        if (o.Dim % block != 0 || o.HiddenDim % block != 0)
        {
            throw new ArgumentException($"--type {matrixType} needs --dim and --hidden-dim to be multiples of {block} (got {o.Dim}, {o.HiddenDim})");
        }

        var gguf = new GgufWriter(output);
        gguf.Add("general.architecture", "llama");
        gguf.Add("general.name", o.Name);
        gguf.Add("general.alignment", (uint)GgufWriter.DefaultAlignment);
        gguf.Add("general.file_type", FileType(matrixType));
        gguf.Add("llama.context_length", (uint)o.ContextLength);
        gguf.Add("llama.embedding_length", (uint)o.Dim);
        gguf.Add("llama.block_count", (uint)o.Layers);
        gguf.Add("llama.feed_forward_length", (uint)o.HiddenDim);
        gguf.Add("llama.rope.dimension_count", (uint)o.HeadDim);
        gguf.Add("llama.attention.head_count", (uint)o.Heads);
        gguf.Add("llama.attention.head_count_kv", (uint)o.KvHeads);
        gguf.Add("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        gguf.Add("llama.rope.freq_base", 10000f);
        gguf.Add("llama.vocab_size", (uint)o.VocabSize);
        vocabulary.AddGgufMetadata(gguf);

        var tensors = layout.ModelTensors.ToList();
        foreach (SynthTensor t in tensors)
        {
            GgmlType type = t.IsMatrix ? matrixType : GgmlType.F32;
            ReadOnlySpan<long> dims = t.IsMatrix ? [t.Cols, t.Rows] : [t.Cols];
            gguf.AddTensor(t.GgufName, type, dims);
        }

        gguf.WriteHeader();
        var buffer = new float[Llama2cCheckpointWriter.ChunkFloats];
        byte[] bytes = new byte[GgmlTypeInfo.ByteSize(GgmlType.F32, buffer.Length)];
        foreach (SynthTensor t in tensors)
        {
            GgmlType type = t.IsMatrix ? matrixType : GgmlType.F32;
            layout.Stream(t, buffer, (chunk, _) =>
            {
                Span<byte> quantized = bytes.AsSpan(0, (int)GgmlTypeInfo.ByteSize(type, chunk.Length));
                GgmlQuantizer.Quantize(type, chunk, quantized);
                gguf.WriteTensorData(quantized);
            });
        }

        gguf.Finish();
        return gguf.BytesWritten;
    }

    /// <summary>llama_ftype of a file whose matrices are all <paramref name="matrixType"/>.</summary>
    public static uint FileType(GgmlType matrixType) => matrixType switch
    {
        GgmlType.F32 => 0,
        GgmlType.F16 => 1,
        GgmlType.Q4_0 => 2,
        GgmlType.Q8_0 => 7,
        GgmlType.BF16 => 32,
        _ => throw new NotSupportedException($"no llama file type for {matrixType}"),
    };
}

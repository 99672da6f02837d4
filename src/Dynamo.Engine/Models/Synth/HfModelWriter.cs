using System.Text.Json;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models.Synth;

/// <summary>
/// Writes a synthetic model as a Hugging Face LlamaForCausalLM directory: config.json, generation_config.json,
/// model.safetensors (F32, F16 or BF16), tokenizer.json, tokenizer_config.json, special_tokens_map.json.
/// </summary>
/// <remarks>
/// Hugging Face Llama applies RoPE to the pairs (i, i + head_dim/2) ("rotate_half"), while the generated weights,
/// like llama2.c and llama-arch GGUF, pair (2i, 2i+1). So that this directory computes the same function as the
/// GGUF and llama2.c files, the rows of wq (per attention head) and wk (per KV head) are permuted exactly as
/// Meta's convert_llama_weights_to_hf.py does: <c>w.view(n_heads, head_dim/2, 2, in).transpose(1, 2).reshape(out, in)</c>,
/// i.e. new row h·hd + p·hd/2 + i takes old row h·hd + 2i + p. Loaders that turn an HF checkpoint into
/// GGUF undo it with the inverse permutation.
/// </remarks>
public static class HfModelWriter
{
    /// <summary>Writes the directory (created if missing); returns the bytes of model.safetensors.</summary>
    public static long Write(SynthModelLayout layout, SynthVocabulary vocabulary, GgmlType type, string directory)
    {
        SynthModelOptions o = layout.Options;
        string dtype = type switch
        {
            GgmlType.F32 => "F32",
            GgmlType.F16 => "F16",
            GgmlType.BF16 => "BF16",
            _ => throw new ArgumentException($"--type {type} is not available for --format hf (use F32, F16 or BF16)"),
        };

        if (File.Exists(directory))
        {
            throw new IOException($"{directory} is a file; --format hf writes a directory");
        }

        Directory.CreateDirectory(directory);
        WriteJson(Path.Combine(directory, "config.json"), w => WriteConfig(w, o, dtype));
        WriteJson(Path.Combine(directory, "generation_config.json"), w =>
        {
            w.WriteStartObject();
            w.WriteNumber("bos_token_id", vocabulary.BosId);
            w.WriteNumber("eos_token_id", vocabulary.EosId);
            w.WriteEndObject();
        });
        WriteJson(Path.Combine(directory, "special_tokens_map.json"), w =>
        {
            w.WriteStartObject();
            w.WriteString("bos_token", vocabulary.Pieces[vocabulary.BosId]);
            w.WriteString("eos_token", vocabulary.Pieces[vocabulary.EosId]);
            w.WriteString("unk_token", vocabulary.Pieces[vocabulary.UnknownId]);
            w.WriteEndObject();
        });
        using (var s = File.Create(Path.Combine(directory, "tokenizer.json")))
        {
            HfTokenizerJson.WriteTokenizerJson(vocabulary, s);
        }

        using (var s = File.Create(Path.Combine(directory, "tokenizer_config.json")))
        {
            HfTokenizerJson.WriteTokenizerConfig(vocabulary, s);
        }

        return SynthModelWriter.WriteFile(Path.Combine(directory, "model.safetensors"), layout,
            s => WriteSafetensors(layout, type, dtype, s)).Bytes;
    }

    /// <summary>
    /// Meta's <c>permute</c> for Hugging Face: rows of a [heads·headDim, cols] matrix reordered per head from
    /// interleaved pairs (2i, 2i+1) to halves (i, i + headDim/2).
    /// </summary>
    public static void PermuteForHalfSplitRope(ReadOnlySpan<float> source, Span<float> destination, int heads, int cols)
    {
        if (source.Length != destination.Length || source.Length % (heads * cols) != 0)
        {
            throw new ArgumentException("source and destination must both be heads × headDim × cols");
        }

        int headDim = source.Length / (heads * cols);
        int half = headDim / 2;
        for (int h = 0; h < heads; h++)
        {
            for (int p = 0; p < 2; p++)
            {
                for (int i = 0; i < half; i++)
                {
                    int to = (h * headDim) + (p * half) + i;
                    int from = (h * headDim) + (2 * i) + p;
                    source.Slice(from * cols, cols).CopyTo(destination.Slice(to * cols, cols));
                }
            }
        }
    }

    private static long WriteSafetensors(SynthModelLayout layout, GgmlType type, string dtype, Stream output)
    {
        var tensors = layout.ModelTensors.ToList();
        var writer = new SafetensorsWriter(output, tensors
            .Select(t => (t.HfName, dtype, t.IsMatrix ? new long[] { t.Rows, t.Cols } : new long[] { t.Cols }))
            .ToList());
        writer.WriteHeader();
        var buffer = new float[Llama2cCheckpointWriter.ChunkFloats];
        byte[] bytes = new byte[buffer.Length * sizeof(float)];
        void Emit(ReadOnlySpan<float> chunk)
        {
            Span<byte> converted = bytes.AsSpan(0, (int)GgmlTypeInfo.ByteSize(type, chunk.Length));
            GgmlQuantizer.Quantize(type, chunk, converted);
            writer.WriteTensorData(converted);
        }

        SynthModelOptions o = layout.Options;
        foreach (SynthTensor t in tensors)
        {
            if (t.Kind is SynthTensorKind.Wq or SynthTensorKind.Wk)
            {
                // The whole matrix (at most dim × dim) is needed to permute its rows.
                float[] whole = new float[t.ElementCount];
                float[] permuted = new float[t.ElementCount];
                layout.Fill(t, 0, whole);
                PermuteForHalfSplitRope(whole, permuted, t.Kind == SynthTensorKind.Wq ? o.Heads : o.KvHeads, t.Cols);
                for (int start = 0; start < permuted.Length; start += buffer.Length)
                {
                    Emit(permuted.AsSpan(start, Math.Min(buffer.Length, permuted.Length - start)));
                }
            }
            else
            {
                layout.Stream(t, buffer, (chunk, _) => Emit(chunk));
            }
        }

        writer.Finish();
        return writer.BytesWritten;
    }

    private static void WriteConfig(Utf8JsonWriter w, SynthModelOptions o, string dtype)
    {
        w.WriteStartObject();
        w.WriteStartArray("architectures");
        w.WriteStringValue("LlamaForCausalLM");
        w.WriteEndArray();
        w.WriteString("model_type", "llama");
        w.WriteBoolean("attention_bias", false);
        w.WriteNumber("attention_dropout", 0.0);
        w.WriteNumber("bos_token_id", 1);
        w.WriteNumber("eos_token_id", 2);
        w.WriteString("hidden_act", "silu");
        w.WriteNumber("hidden_size", o.Dim);
        w.WriteNumber("head_dim", o.HeadDim);
        w.WriteNumber("initializer_range", SynthRandom.Scale);
        w.WriteNumber("intermediate_size", o.HiddenDim);
        w.WriteNumber("max_position_embeddings", o.ContextLength);
        w.WriteBoolean("mlp_bias", false);
        w.WriteNumber("num_attention_heads", o.Heads);
        w.WriteNumber("num_hidden_layers", o.Layers);
        w.WriteNumber("num_key_value_heads", o.KvHeads);
        w.WriteNumber("pretraining_tp", 1);
        w.WriteNumber("rms_norm_eps", 1e-5);
        w.WriteNull("rope_scaling");
        w.WriteNumber("rope_theta", 10000.0);
        w.WriteBoolean("tie_word_embeddings", o.Tied);
        w.WriteString("torch_dtype", dtype switch { "F16" => "float16", "BF16" => "bfloat16", _ => "float32" });
        w.WriteString("transformers_version", "4.41.2");
        w.WriteBoolean("use_cache", true);
        w.WriteNumber("vocab_size", o.VocabSize);
        w.WriteEndObject();
    }

    private static void WriteJson(string path, Action<Utf8JsonWriter> write)
    {
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        write(w);
    }
}

using System.Collections.ObjectModel;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models;

/// <summary>
/// A Hugging Face checkpoint directory: config.json plus model.safetensors, or shards listed in
/// model.safetensors.index.json. Every file is memory-mapped; tensors are renamed to the canonical
/// GGUF names and their shapes reversed to ggml order. F32, F16 and BF16 only.
/// </summary>
public sealed unsafe partial class SafeTensorsModel : IModelWeights
{
    private readonly MappedFile[] _maps;

    private SafeTensorsModel(string source, ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors, MappedFile[] maps)
    {
        Source = source;
        Config = config;
        Tensors = tensors;
        _maps = maps;
    }

    public ModelConfig Config { get; }
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }
    public string Source { get; }

    public static SafeTensorsModel Open(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new ModelFormatException(directory, "directory not found");
        }

        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
        {
            throw new ModelFormatException(directory, "no config.json in this directory");
        }

        var maps = new List<MappedFile>();
        try
        {
            var hf = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            var aliases = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (string file in ShardFiles(directory))
            {
                MappedFile map = MappedFile.Open(file);
                maps.Add(map);
                ReadHeader(map, hf, aliases);
            }

            foreach ((string alias, string target) in aliases)
            {
                if (!hf.ContainsKey(alias) && hf.TryGetValue(target, out Tensor? t))
                {
                    hf[alias] = new Tensor(alias, t.Type, t.Dims, t.Data, t.ByteLength);
                }
            }

            using JsonDocument configJson = ParseJson(configPath, File.ReadAllBytes(configPath));
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            foreach ((string name, Tensor t) in hf)
            {
                if (CanonicalName(name) is string canonical)
                {
                    tensors[canonical] = new Tensor(canonical, t.Type, t.Dims, t.Data, t.ByteLength);
                }
            }

            ModelConfig config = BuildConfig(configPath, configJson.RootElement, tensors);
            if (config.TiedEmbeddings)
            {
                tensors.Remove("output.weight");
            }

            WeightShapes.Validate(directory, config, tensors);
            return new SafeTensorsModel(directory, config, new ReadOnlyDictionary<string, Tensor>(tensors), [.. maps]);
        }
        catch
        {
            foreach (MappedFile m in maps)
            {
                m.Dispose();
            }

            throw;
        }
    }

    private static List<string> ShardFiles(string directory)
    {
        string single = Path.Combine(directory, "model.safetensors");
        if (File.Exists(single))
        {
            return [single];
        }

        string index = Path.Combine(directory, "model.safetensors.index.json");
        if (!File.Exists(index))
        {
            throw new ModelFormatException(directory, "neither model.safetensors nor model.safetensors.index.json is present");
        }

        using JsonDocument doc = ParseJson(index, File.ReadAllBytes(index));
        if (!doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(index, "no \"weight_map\" object");
        }

        var files = new SortedSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty p in map.EnumerateObject())
        {
            string shard = p.Value.GetString() ?? "";
            if (shard.Length == 0 || shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
            {
                throw new ModelFormatException(index, $"weight_map entry for '{p.Name}' names an invalid file '{shard}'");
            }

            files.Add(Path.Combine(directory, shard));
        }

        foreach (string f in files)
        {
            if (!File.Exists(f))
            {
                throw new ModelFormatException(index, $"shard '{Path.GetFileName(f)}' is missing");
            }
        }

        return [.. files];
    }

    private static JsonDocument ParseJson(string path, ReadOnlyMemory<byte> json)
    {
        try
        {
            return JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, $"invalid JSON: {e.Message}", e);
        }
    }

    private static void ReadHeader(MappedFile map, Dictionary<string, Tensor> tensors, Dictionary<string, string> aliases)
    {
        string path = map.Path;
        if (map.Length < 8)
        {
            throw new ModelFormatException(path, $"not a safetensors file: only {map.Length} bytes");
        }

        ulong headerLength = *(ulong*)map.Pointer;
        if (headerLength < 2 || headerLength > (ulong)(map.Length - 8) || headerLength > 100_000_000)
        {
            throw new ModelFormatException(path, $"safetensors header length {headerLength} is impossible for a file of {map.Length} bytes");
        }

        long dataStart = 8 + (long)headerLength;
        long dataLength = map.Length - dataStart;
        byte[] header = new ReadOnlySpan<byte>(map.Pointer + 8, (int)headerLength).ToArray();
        using JsonDocument doc = ParseJson(path, header);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "safetensors header is not a JSON object");
        }

        foreach (JsonProperty p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__")
            {
                if (p.Value.ValueKind == JsonValueKind.Object)
                {
                    foreach (JsonProperty m in p.Value.EnumerateObject())
                    {
                        // Some exporters record a removed tied tensor as "name": "name it aliases".
                        if (m.Value.ValueKind == JsonValueKind.String && m.Name.EndsWith(".weight", StringComparison.Ordinal))
                        {
                            aliases[m.Name] = m.Value.GetString()!;
                        }
                    }
                }

                continue;
            }

            Tensor t = ReadTensorEntry(path, p, map.Pointer + dataStart, dataLength);
            if (!tensors.TryAdd(t.Name, t))
            {
                throw new ModelFormatException(path, $"tensor '{t.Name}' appears in more than one place");
            }
        }
    }

    private static Tensor ReadTensorEntry(string path, JsonProperty p, byte* data, long dataLength)
    {
        string name = p.Name;
        JsonElement e = p.Value;
        if (e.ValueKind != JsonValueKind.Object
            || !e.TryGetProperty("dtype", out JsonElement dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !e.TryGetProperty("shape", out JsonElement shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !e.TryGetProperty("data_offsets", out JsonElement offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
        {
            throw new ModelFormatException(path, $"tensor '{name}': header entry needs dtype, shape and data_offsets [begin, end]");
        }

        string dtype = dtypeEl.GetString()!;
        (GgmlType type, int size) = dtype switch
        {
            "F32" => (GgmlType.F32, 4),
            "F16" => (GgmlType.F16, 2),
            "BF16" => (GgmlType.BF16, 2),
            _ => throw new ModelFormatException(path, $"tensor '{name}' has dtype {dtype} (supported: F32, F16, BF16)"),
        };

        int rank = shapeEl.GetArrayLength();
        if (rank is 0 or > 4)
        {
            throw new ModelFormatException(path, $"tensor '{name}' has {rank} dimensions (1 to 4 supported)");
        }

        var dims = new long[rank];
        long elements = 1;
        int i = rank - 1;
        foreach (JsonElement d in shapeEl.EnumerateArray())
        {
            if (!d.TryGetInt64(out long v) || v <= 0 || v > int.MaxValue)
            {
                throw new ModelFormatException(path, $"tensor '{name}' has an impossible dimension {d}");
            }

            dims[i--] = v;
            elements *= v;
        }

        if (!offEl[0].TryGetInt64(out long begin) || !offEl[1].TryGetInt64(out long end) || begin < 0 || end < begin || end > dataLength)
        {
            throw new ModelFormatException(path, $"tensor '{name}': data_offsets {offEl} lie outside the {dataLength} data bytes");
        }

        if (end - begin != elements * size)
        {
            throw new ModelFormatException(path, $"tensor '{name}': {end - begin} bytes for {elements} {dtype} values ({elements * size} expected)");
        }

        return new Tensor(name, type, dims, data + begin, end - begin);
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.(.+)$")]
    private static partial Regex LayerName();

    /// <summary>Canonical (GGUF) name of a Hugging Face tensor name, or null for a tensor the engine does not use.</summary>
    internal static string? CanonicalName(string hf)
    {
        switch (hf)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }

        Match m = LayerName().Match(hf);
        if (!m.Success)
        {
            return null;
        }

        string suffix = m.Groups[2].Value switch
        {
            "input_layernorm.weight" => "attn_norm.weight",
            "post_attention_layernorm.weight" => "ffn_norm.weight",
            "self_attn.q_proj.weight" => "attn_q.weight",
            "self_attn.k_proj.weight" => "attn_k.weight",
            "self_attn.v_proj.weight" => "attn_v.weight",
            "self_attn.o_proj.weight" => "attn_output.weight",
            "self_attn.q_proj.bias" => "attn_q.bias",
            "self_attn.k_proj.bias" => "attn_k.bias",
            "self_attn.v_proj.bias" => "attn_v.bias",
            "self_attn.q_norm.weight" => "attn_q_norm.weight",
            "self_attn.k_norm.weight" => "attn_k_norm.weight",
            "mlp.gate_proj.weight" => "ffn_gate.weight",
            "mlp.up_proj.weight" => "ffn_up.weight",
            "mlp.down_proj.weight" => "ffn_down.weight",
            _ => "",
        };
        return suffix.Length == 0 ? null : $"blk.{m.Groups[1].Value}.{suffix}";
    }

    private static ModelConfig BuildConfig(string path, JsonElement c, Dictionary<string, Tensor> tensors)
    {
        if (c.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "config.json is not a JSON object");
        }

        string hfArch = c.TryGetProperty("architectures", out JsonElement archs) && archs.ValueKind == JsonValueKind.Array && archs.GetArrayLength() > 0
            ? archs[0].GetString() ?? ""
            : throw new ModelFormatException(path, "\"architectures\" is missing");
        string arch = hfArch switch
        {
            "LlamaForCausalLM" => "llama",
            "MistralForCausalLM" => "mistral",
            "Qwen2ForCausalLM" => "qwen2",
            "Qwen3ForCausalLM" => "qwen3",
            _ => throw new ModelFormatException(path, $"unsupported architecture '{hfArch}' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)"),
        };

        int Int(string key)
        {
            if (c.TryGetProperty(key, out JsonElement v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i))
            {
                return i;
            }

            throw new ModelFormatException(path, $"\"{key}\" is missing or not an integer");
        }

        int? OptInt(string key) => c.TryGetProperty(key, out JsonElement v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : null;
        float? OptFloat(JsonElement o, string key) => o.TryGetProperty(key, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? (float)v.GetDouble() : null;
        bool? OptBool(string key) => c.TryGetProperty(key, out JsonElement v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

        int dim = Int("hidden_size");
        int heads = Int("num_attention_heads");
        bool tied = !tensors.ContainsKey("output.weight") || (OptBool("tie_word_embeddings") ?? false);
        if (!tensors.ContainsKey("token_embd.weight") && tensors.TryGetValue("output.weight", out Tensor? lmHead))
        {
            // Tied checkpoints saved without the embedding: the classifier is the embedding.
            tensors["token_embd.weight"] = new Tensor("token_embd.weight", lmHead.Type, lmHead.Dims, lmHead.Data, lmHead.ByteLength);
            tied = true;
        }

        RopeScaling? scaling = null;
        if (c.TryGetProperty("rope_scaling", out JsonElement rs) && rs.ValueKind == JsonValueKind.Object)
        {
            string type = (rs.TryGetProperty("rope_type", out JsonElement rt) || rs.TryGetProperty("type", out rt)) ? rt.GetString() ?? "" : "";
            if (type == "llama3")
            {
                scaling = new RopeScaling(OptFloat(rs, "factor") ?? 8f, OptFloat(rs, "low_freq_factor") ?? 1f, OptFloat(rs, "high_freq_factor") ?? 4f,
                    rs.TryGetProperty("original_max_position_embeddings", out JsonElement o) && o.TryGetInt32(out int oi) ? oi : 8192);
            }
            else if (type is not ("default" or ""))
            {
                throw new ModelFormatException(path, $"unsupported rope scaling type '{type}' (supported: llama3)");
            }
        }

        return new ModelConfig
        {
            Architecture = arch,
            Dim = dim,
            HiddenDim = Int("intermediate_size"),
            Layers = Int("num_hidden_layers"),
            Heads = heads,
            KvHeads = OptInt("num_key_value_heads") ?? heads,
            VocabSize = Int("vocab_size"),
            ContextLength = OptInt("max_position_embeddings") ?? 2048,
            HeadDim = OptInt("head_dim") ?? (heads > 0 ? dim / heads : 0),
            RmsNormEps = OptFloat(c, "rms_norm_eps") ?? 1e-6f,
            RopeTheta = OptFloat(c, "rope_theta") ?? 10000f,
            RopeLayout = RopeLayout.HalfSplit,
            RopeScaling = scaling,
            TiedEmbeddings = tied,
            QkvBias = tensors.ContainsKey("blk.0.attn_q.bias") || (OptBool("attention_bias") ?? false),
            QkNorm = tensors.ContainsKey("blk.0.attn_q_norm.weight"),
        };
    }

    public void Dispose()
    {
        foreach (MappedFile m in _maps)
        {
            m.Dispose();
        }
    }
}

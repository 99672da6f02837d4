using System.Text;
using System.Text.Json;

namespace Dynamo.Tests.Engine.Models;

/// <summary>Writes small Hugging Face checkpoints (config.json and safetensors files) for tests.</summary>
internal static class SafeTensorsTestWriter
{
    /// <summary>Writes a safetensors file of F32 tensors (shape in Hugging Face order) filled with their index + 1.</summary>
    public static void Write(string path, IEnumerable<(string Name, long[] Shape)> tensors, string dtype = "F32", Dictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>();
        if (metadata is not null)
        {
            header["__metadata__"] = metadata;
        }

        int size = dtype == "F32" ? 4 : dtype == "I64" ? 8 : 2;
        using var data = new MemoryStream();
        int index = 0;
        foreach ((string name, long[] shape) in tensors)
        {
            long n = shape.Aggregate(1L, (a, b) => a * b);
            long begin = data.Length;
            for (long i = 0; i < n; i++)
            {
                if (size == 4)
                {
                    data.Write(BitConverter.GetBytes((float)(index + 1)));
                }
                else
                {
                    data.Write(new byte[size]);
                }
            }

            header[name] = new { dtype, shape, data_offsets = new[] { begin, data.Length } };
            index++;
        }

        byte[] json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        using var f = File.Create(path);
        f.Write(BitConverter.GetBytes((ulong)json.Length));
        f.Write(json);
        data.Position = 0;
        data.CopyTo(f);
    }

    /// <summary>HF tensor names and shapes of a tiny llama-style model (hidden 32, 2 layers, 2 heads, 1 KV head).</summary>
    public static List<(string Name, long[] Shape)> TinyLlama(bool lmHead, bool qkNorm = false, bool bias = false)
    {
        var list = new List<(string, long[])> { ("model.embed_tokens.weight", [8, 32]), ("model.norm.weight", [32]) };
        if (lmHead)
        {
            list.Add(("lm_head.weight", [8, 32]));
        }

        for (int l = 0; l < 2; l++)
        {
            string p = $"model.layers.{l}.";
            list.Add((p + "input_layernorm.weight", [32]));
            list.Add((p + "post_attention_layernorm.weight", [32]));
            list.Add((p + "self_attn.q_proj.weight", [32, 32]));
            list.Add((p + "self_attn.k_proj.weight", [16, 32]));
            list.Add((p + "self_attn.v_proj.weight", [16, 32]));
            list.Add((p + "self_attn.o_proj.weight", [32, 32]));
            list.Add((p + "mlp.gate_proj.weight", [64, 32]));
            list.Add((p + "mlp.up_proj.weight", [64, 32]));
            list.Add((p + "mlp.down_proj.weight", [32, 64]));
            if (qkNorm)
            {
                list.Add((p + "self_attn.q_norm.weight", [16]));
                list.Add((p + "self_attn.k_norm.weight", [16]));
            }

            if (bias)
            {
                list.Add((p + "self_attn.q_proj.bias", [32]));
                list.Add((p + "self_attn.k_proj.bias", [16]));
                list.Add((p + "self_attn.v_proj.bias", [16]));
            }
        }

        return list;
    }

    public static void WriteConfig(string dir, string architecture, bool tied, string extra = "")
    {
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {"architectures": ["{{architecture}}"], "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 8, "max_position_embeddings": 256,
             "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": {{(tied ? "true" : "false")}} {{extra}}}
            """);
    }
}

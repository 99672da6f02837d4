using System.Collections.ObjectModel;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models;

/// <summary>
/// A GGUF checkpoint (llama, mistral, qwen2, qwen3 architectures), memory-mapped. Tensor names are
/// GGUF's own, which are the canonical names. The parsed header stays available in <see cref="File"/>
/// for the tokenizer and the chat template.
/// </summary>
public sealed unsafe class GgufModel : IModelWeights
{
    private readonly MappedFile _map;

    private GgufModel(GgufFile file, MappedFile map, ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors)
    {
        File = file;
        _map = map;
        Config = config;
        Tensors = tensors;
    }

    public GgufFile File { get; }
    public ModelConfig Config { get; }
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }
    public string Source => File.Path;

    /// <summary>Llama 3 rope frequency factors (rope_freqs.weight), when the file carries them.</summary>
    public Tensor? RopeFreqs => Tensors.GetValueOrDefault("rope_freqs.weight");

    public static GgufModel Open(string path)
    {
        GgufFile file = GgufFile.Read(path);
        MappedFile map = MappedFile.Open(path);
        try
        {
            if (map.Length != file.FileLength)
            {
                throw new ModelFormatException(path, "file changed while it was being opened");
            }

            var tensors = new Dictionary<string, Tensor>(file.Tensors.Count, StringComparer.Ordinal);
            foreach (GgufTensorInfo info in file.Tensors)
            {
                if (!WeightShapes.IsSupported(info.Type) || info.ByteSize is not long bytes)
                {
                    throw new ModelFormatException(path, $"tensor '{info.Name}' has type {info.Type}, which the kernels do not support (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)");
                }

                tensors.Add(info.Name, new Tensor(info.Name, info.Type, info.Dims, map.Pointer + file.DataOffset + info.Offset, bytes));
            }

            ModelConfig config = BuildConfig(file, tensors);
            WeightShapes.Validate(path, config, tensors);
            return new GgufModel(file, map, config, new ReadOnlyDictionary<string, Tensor>(tensors));
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    private static ModelConfig BuildConfig(GgufFile f, Dictionary<string, Tensor> tensors)
    {
        string arch = f.Architecture ?? throw new ModelFormatException(f.Path, "metadata key 'general.architecture' is missing");
        RopeLayout layout = arch switch
        {
            "llama" or "mistral" => RopeLayout.Interleaved,
            "qwen2" or "qwen3" => RopeLayout.HalfSplit,
            _ => throw new ModelFormatException(f.Path, $"unsupported architecture '{arch}' (supported: llama, mistral, qwen2, qwen3)"),
        };

        int Int(string key) => checked((int)f.GetUInt($"{arch}.{key}"));
        int heads = Int("attention.head_count");
        int dim = Int("embedding_length");
        int headDim = f.TryGetUInt($"{arch}.attention.key_length", out uint kl) ? (int)kl : heads > 0 ? dim / heads : 0;

        int vocab = tensors.TryGetValue("token_embd.weight", out Tensor? embd) && embd.Dims.Length == 2
            ? (int)embd.Dims[1]
            : f.TryGetArray("tokenizer.ggml.tokens", out string[]? tokens) ? tokens.Length
            : throw new ModelFormatException(f.Path, "tensor 'token_embd.weight' is missing");
        if (f.TryGetArray("tokenizer.ggml.tokens", out string[]? vocabTokens) && vocabTokens.Length > vocab)
        {
            throw new ModelFormatException(f.Path, $"the tokenizer has {vocabTokens.Length} tokens but token_embd.weight only {vocab} rows");
        }

        return new ModelConfig
        {
            Architecture = arch,
            Dim = dim,
            HiddenDim = Int("feed_forward_length"),
            Layers = Int("block_count"),
            Heads = heads,
            KvHeads = f.TryGetUInt($"{arch}.attention.head_count_kv", out uint kv) ? (int)kv : heads,
            VocabSize = vocab,
            ContextLength = Int("context_length"),
            HeadDim = headDim,
            RmsNormEps = f.TryGetFloat($"{arch}.attention.layer_norm_rms_epsilon", out float eps) ? eps : 1e-5f,
            RopeTheta = f.TryGetFloat($"{arch}.rope.freq_base", out float theta) ? theta : 10000f,
            RopeLayout = layout,
            RopeScaling = RopeScalingOf(f, arch, tensors.ContainsKey("rope_freqs.weight")),
            TiedEmbeddings = !tensors.ContainsKey("output.weight"),
            QkvBias = tensors.ContainsKey("blk.0.attn_q.bias"),
            QkNorm = tensors.ContainsKey("blk.0.attn_q_norm.weight"),
        };
    }

    private static RopeScaling? RopeScalingOf(GgufFile f, string arch, bool hasRopeFreqs)
    {
        string type = f.TryGetString($"{arch}.rope.scaling.type", out string? t) ? t : hasRopeFreqs ? "llama3" : "none";
        if (type == "none")
        {
            return null;
        }

        if (type != "llama3")
        {
            throw new ModelFormatException(f.Path, $"unsupported rope scaling type '{type}' (supported: none, llama3)");
        }

        float factor = f.TryGetFloat($"{arch}.rope.scaling.factor", out float fa) ? fa : 8f;
        int original = f.TryGetUInt($"{arch}.rope.scaling.original_context_length", out uint o) ? (int)o : 8192;
        return new RopeScaling(factor, 1f, 4f, original);
    }

    public void Dispose() => _map.Dispose();
}

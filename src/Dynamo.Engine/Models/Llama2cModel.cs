using System.Collections.ObjectModel;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Engine.Models;

/// <summary>
/// A llama2.c checkpoint (the legacy "version 0" export of run.c): a 7 x int32 header
/// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means a
/// separate classifier follows), then float32 tensors in this order: token embedding, attention RMS
/// weights, wq, wk, wv, wo (each kind for all layers), FFN RMS weights, w1, w2, w3, final RMS weight,
/// the legacy freq_cis tables (skipped), and the classifier when untied. The weights are memory-mapped
/// and exposed per layer under the canonical names; RoPE pairs are interleaved, as run.c computes them.
/// </summary>
public sealed unsafe class Llama2cModel : IModelWeights
{
    private const int HeaderBytes = 7 * sizeof(int);
    private readonly MappedFile _map;

    private Llama2cModel(MappedFile map, ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors)
    {
        _map = map;
        Config = config;
        Tensors = tensors;
    }

    public ModelConfig Config { get; }
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }
    public string Source => _map.Path;

    public static Llama2cModel Open(string path)
    {
        MappedFile map = MappedFile.Open(path);
        try
        {
            if (map.Length < HeaderBytes)
            {
                throw new ModelFormatException(path, $"truncated: {map.Length} bytes is shorter than the 28-byte llama2.c header");
            }

            int* h = (int*)map.Pointer;
            int dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kvHeads = h[4], vocabRaw = h[5], seqLen = h[6];
            bool tied = vocabRaw > 0;
            int vocab = Math.Abs(vocabRaw);
            if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab == 0 || seqLen <= 0
                || dim > 1 << 16 || hidden > 1 << 18 || layers > 1024 || heads > dim || vocab > 1 << 22 || seqLen > 1 << 22
                || dim % heads != 0 || heads % kvHeads != 0)
            {
                throw new ModelFormatException(path,
                    $"not a llama2.c checkpoint: impossible header (dim {dim}, hidden {hidden}, layers {layers}, heads {heads}, kv heads {kvHeads}, vocab {vocabRaw}, seq_len {seqLen})");
            }

            int headDim = dim / heads;
            int kvDim = kvHeads * headDim;
            var config = new ModelConfig
            {
                Architecture = "llama",
                Dim = dim,
                HiddenDim = hidden,
                Layers = layers,
                Heads = heads,
                KvHeads = kvHeads,
                VocabSize = vocab,
                ContextLength = seqLen,
                HeadDim = headDim,
                RmsNormEps = 1e-5f,
                RopeTheta = 10000f,
                RopeLayout = RopeLayout.Interleaved,
                TiedEmbeddings = tied,
            };

            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            long offset = HeaderBytes;

            // Takes one tensor of `rows` x `cols` floats per layer (or one when perLayer is null).
            void Take(string name, long cols, long rows, bool perLayer)
            {
                long bytes = cols * rows * sizeof(float);
                int count = perLayer ? layers : 1;
                if (offset + bytes * count > map.Length)
                {
                    throw new ModelFormatException(path,
                        $"truncated: tensor '{name}' needs {offset + bytes * count} bytes, the file has {map.Length}");
                }

                for (int l = 0; l < count; l++)
                {
                    string full = perLayer ? $"blk.{l}.{name}" : name;
                    long[] dims = rows == 1 ? [cols] : [cols, rows];
                    tensors[full] = new Tensor(full, GgmlType.F32, dims, map.Pointer + offset, bytes);
                    offset += bytes;
                }
            }

            Take("token_embd.weight", dim, vocab, perLayer: false);
            Take("attn_norm.weight", dim, 1, perLayer: true);
            Take("attn_q.weight", dim, dim, perLayer: true);
            Take("attn_k.weight", dim, kvDim, perLayer: true);
            Take("attn_v.weight", dim, kvDim, perLayer: true);
            Take("attn_output.weight", dim, dim, perLayer: true);
            Take("ffn_norm.weight", dim, 1, perLayer: true);
            Take("ffn_gate.weight", dim, hidden, perLayer: true);
            Take("ffn_down.weight", hidden, dim, perLayer: true);
            Take("ffn_up.weight", dim, hidden, perLayer: true);
            Take("output_norm.weight", dim, 1, perLayer: false);
            offset += (long)seqLen * headDim * sizeof(float); // freq_cis_real and freq_cis_imag: seq_len x head_dim/2 each
            if (!tied)
            {
                Take("output.weight", dim, vocab, perLayer: false);
            }

            if (offset > map.Length)
            {
                throw new ModelFormatException(path, $"truncated: expected at least {offset} bytes, the file has {map.Length}");
            }

            WeightShapes.Validate(path, config, tensors);
            return new Llama2cModel(map, config, new ReadOnlyDictionary<string, Tensor>(tensors));
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    public void Dispose() => _map.Dispose();
}

using System.Globalization;
using Dynamo.Engine.Models;

namespace Dynamo.Engine.Parallel;

/// <summary>
/// One pipeline-parallel stage's part of a model: the consecutive layers [<see cref="FirstLayer"/>,
/// <see cref="FirstLayer"/> + <see cref="LayerCount"/>) renamed blk.0.. (so that a <see cref="Inference.Transformer"/>
/// runs them as a model of <see cref="LayerCount"/> layers), the token embedding on the first stage, and the final norm
/// and output projection on the last. Every tensor is a view of the full model's mapping, and only this stage's are ever
/// read, so a rank's resident weights are its layers (plus the embedding or output rows it reads). <see cref="Config"/>
/// is the model's with Layers = <see cref="LayerCount"/>: a paged KV cache built from it holds this stage's layers only.
/// Layers that do not divide by the stages are split as evenly as they go, the first stages taking one more.
/// </summary>
public sealed class PipelineStageWeights : IModelWeights
{
    private readonly IModelWeights _full;
    private readonly Dictionary<string, Tensor> _tensors = [];

    private PipelineStageWeights(IModelWeights full, int stage, int stages)
    {
        _full = full;
        Stage = stage;
        Stages = stages;
        FullConfig = full.Config;
        (FirstLayer, LayerCount) = Split(full.Config.Layers, stages, stage);
        Config = FullConfig with { Layers = LayerCount };
        IReadOnlyDictionary<string, Tensor> t = full.Tensors;
        foreach ((string name, Tensor tensor) in t)
        {
            if (name.StartsWith("blk.", StringComparison.Ordinal))
            {
                int dot = name.IndexOf('.', 4);
                int layer = int.Parse(name.AsSpan(4, dot - 4), CultureInfo.InvariantCulture);
                if (layer >= FirstLayer && layer < FirstLayer + LayerCount)
                {
                    _tensors[string.Create(CultureInfo.InvariantCulture, $"blk.{layer - FirstLayer}{name[dot..]}")] = tensor;
                    ViewBytes += tensor.ByteLength;
                }
            }
            else if (name == "rope_freqs.weight"
                || (name == "token_embd.weight" && (IsFirst || (IsLast && FullConfig.TiedEmbeddings)))
                || (name is "output_norm.weight" or "output.weight" && IsLast))
            {
                _tensors[name] = tensor;
                ViewBytes += tensor.ByteLength;
            }
        }
    }

    /// <summary>The model as a whole.</summary>
    public ModelConfig FullConfig { get; }

    /// <summary>This stage's shape: the model's with Layers = <see cref="LayerCount"/>.</summary>
    public ModelConfig Config { get; }

    public IReadOnlyDictionary<string, Tensor> Tensors => _tensors;

    public string Source => _full.Source;

    /// <summary>This stage (= its rank).</summary>
    public int Stage { get; }

    public int Stages { get; }

    /// <summary>The model's index of this stage's first layer.</summary>
    public int FirstLayer { get; }

    public int LayerCount { get; }

    /// <summary>Stage 0: holds the token embedding, runs the scheduler.</summary>
    public bool IsFirst => Stage == 0;

    /// <summary>The last stage: holds the final norm and output projection, computes the logits.</summary>
    public bool IsLast => Stage == Stages - 1;

    /// <summary>Bytes of the mapped weights this stage's tensors cover (touched as they are used).</summary>
    public long ViewBytes { get; }

    /// <summary>The split in words, identical on every rank of one worker: what ranks compare before they serve together.</summary>
    public string Layout => Describe(FullConfig, Stages);

    /// <summary>The layout <see cref="Create"/> gives for <paramref name="stages"/> stages of <paramref name="config"/>.</summary>
    public static string Describe(ModelConfig config, int stages)
    {
        ArgumentNullException.ThrowIfNull(config);
        IEnumerable<string> parts = Enumerable.Range(0, stages).Select(s =>
        {
            (int first, int count) = Split(config.Layers, stages, s);
            return string.Create(CultureInfo.InvariantCulture, $"{first}-{first + count - 1}");
        });
        return string.Create(CultureInfo.InvariantCulture, $"pp {stages}: layers {string.Join(", ", parts)} of {config.Layers}; dim {config.Dim}, vocabulary {config.VocabSize}");
    }

    /// <summary>The first layer and the count of stage <paramref name="stage"/> of <paramref name="stages"/> over <paramref name="layers"/> layers.</summary>
    public static (int First, int Count) Split(int layers, int stages, int stage)
    {
        int count = (layers / stages) + (stage < layers % stages ? 1 : 0);
        int first = (stage * (layers / stages)) + Math.Min(stage, layers % stages);
        return (first, count);
    }

    /// <summary>Throws <see cref="ArgumentException"/> (one line naming the flag) when the model has fewer layers than stages.</summary>
    public static void Check(ModelConfig config, int stages)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (config.Layers < stages)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--pipeline-parallel-size {stages}: the model has {config.Layers} layers; every stage needs at least one"));
        }
    }

    /// <summary>
    /// Stage <paramref name="stage"/>'s part of <paramref name="full"/> for <paramref name="stages"/> stages; takes
    /// ownership of <paramref name="full"/> (disposed when this throws).
    /// </summary>
    public static PipelineStageWeights Create(IModelWeights full, int stage, int stages)
    {
        ArgumentNullException.ThrowIfNull(full);
        try
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(stages, 1);
            ArgumentOutOfRangeException.ThrowIfNegative(stage);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(stage, stages);
            Check(full.Config, stages);
            return new PipelineStageWeights(full, stage, stages);
        }
        catch
        {
            full.Dispose();
            throw;
        }
    }

    public void Dispose() => _full.Dispose();
}

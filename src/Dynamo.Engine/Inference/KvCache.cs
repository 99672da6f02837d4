using Dynamo.Engine.Models;

namespace Dynamo.Engine.Inference;

/// <summary>
/// The keys and values of one sequence, contiguous per layer: [layer][position * kvDim + kvHead * headDim].
/// Sized for <see cref="Capacity"/> positions when created.
/// </summary>
public sealed class KvCache
{
    public KvCache(ModelConfig config, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        KvDim = config.KvHeads * config.HeadDim;
        Keys = new float[config.Layers][];
        Values = new float[config.Layers][];
        for (int l = 0; l < config.Layers; l++)
        {
            Keys[l] = new float[(long)capacity * KvDim];
            Values[l] = new float[(long)capacity * KvDim];
        }
    }

    public int Capacity { get; }
    public int KvDim { get; }
    internal float[][] Keys { get; }
    internal float[][] Values { get; }
}

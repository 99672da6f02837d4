namespace Dynamo.Engine.Serving;

/// <summary>What decided the size of an engine's KV pool (<see cref="KvCacheBudget"/>).</summary>
public enum KvCacheSizeSource
{
    /// <summary>--kv-cache-memory gave it.</summary>
    Flag = 0,

    /// <summary>The model's need: context length x --max-num-seqs x the KV bytes of a token, within the memory cap.</summary>
    Model = 1,

    /// <summary>The model's need was larger than --mem-fraction-static of the available memory: the cap.</summary>
    MemoryCap = 2,
}

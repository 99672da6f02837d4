using Dynamo.Llm.Kv;

namespace Dynamo.Llm.Engines;

/// <summary>
/// The engine-specific half of a KV transfer (disaggregated prefill): how an engine's keys and values are read
/// out of its blocks and written into them. <see cref="EngineCore{TState}"/> does the bookkeeping around it
/// (which requests import, reserving their blocks, parking deferred imports, skipping their prefill, counting
/// refusals, exporting on the last output). Called on the engine's loop only.
/// </summary>
internal interface IKvTransferStore
{
    /// <summary>Whether <paramref name="payload"/> can be written into this engine's blocks (its layout, dtype and length).</summary>
    bool CanImport(KvTransferPayload payload);

    /// <summary>Writes <paramref name="payload"/>'s tokens into <paramref name="blocks"/>, reserved for them.</summary>
    void Import(BlockTable blocks, KvTransferPayload payload);

    /// <summary>The keys and values of positions 0..<paramref name="tokenCount"/>-1 of the sequence whose blocks are <paramref name="blocks"/>.</summary>
    KvTransferPayload Export(BlockTable blocks, int tokenCount);

    /// <summary>
    /// Pushes the keys and values of positions 0..<paramref name="tokenCount"/>-1 to <paramref name="target"/> itself
    /// (a tensor-parallel engine: each rank its own heads, a part of the whole) and says how it went; null when this
    /// store does not push (the caller sends <see cref="Export"/>'s payload).
    /// </summary>
    KvPushResult? Push(BlockTable blocks, int tokenCount, KvPushTarget target) => null;
}

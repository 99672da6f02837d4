using Dynamo.Engine.Inference;
using Dynamo.Engine.KvCache;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;

namespace Dynamo.Engine.Parallel;

/// <summary>
/// The KV transfer of a tensor-parallel engine (rank 0): payloads carry every KV head in the whole model's layout, so
/// a worker with any number of ranks exchanges KV with any other. Pushing (a prefill worker's, with a sender) has each
/// rank send its own heads as one part of the whole, which the receiver assembles; exporting without a sender gathers
/// each rank's heads on rank 0; importing broadcasts the payload (converted first on rank 0 when it holds the other
/// dtype) and each rank keeps its heads. Runs on the engine's thread, between passes, like every other collective of the group.
/// </summary>
internal sealed class TensorParallelKvStore(Transformer model, PagedKvCache cache) : IKvTransferStore
{
    private KvTransferLayout Layout(int tokenCount) => cache.Layout(tokenCount) with { KvHeads = model.FullKvHeads };

    public bool CanImport(KvTransferPayload payload)
    {
        KvTransferLayout theirs = payload.Layout;
        return theirs.Layers == cache.Layers && theirs.KvHeads == model.FullKvHeads && theirs.HeadDim == model.Config.HeadDim && PagedKvCache.IsKnownDtype(theirs.Dtype)
            && theirs.TokenCount >= 0 && payload.Data.Length == theirs.ByteCount;
    }

    public void Import(BlockTable blocks, KvTransferPayload payload) =>
        model.ImportKv(cache, blocks.AsSpan(), payload.Layout.TokenCount, PagedKvCache.Convert(payload, cache.Dtype).Data);

    /// <summary>With a sender (<see cref="Transformer.KvSender"/>), every rank pushes its own heads; without one, null (the caller sends <see cref="Export"/>'s gathered payload).</summary>
    public KvPushResult? Push(BlockTable blocks, int tokenCount, KvPushTarget target) =>
        model.KvSender is null ? null : model.PushKv(cache, blocks.AsSpan(), tokenCount, target);

    public KvTransferPayload Export(BlockTable blocks, int tokenCount)
    {
        KvTransferLayout layout = Layout(tokenCount);
        var data = new byte[layout.ByteCount];
        model.ExportKv(cache, blocks.AsSpan(), tokenCount, data);
        return new KvTransferPayload(layout, data);
    }
}

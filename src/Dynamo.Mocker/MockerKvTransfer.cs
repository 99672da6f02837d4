using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;

namespace Dynamo.Mocker;

/// <summary>
/// The mocker's KV transfer: nothing is stored in its blocks, so a payload carries only a token count (dtype
/// <see cref="Dtype"/>, no data). Another mocker's payload is taken (its prefill is skipped); any other (a real
/// engine's tensors) is refused, and the request is prefilled locally.
/// </summary>
internal sealed class MockerKvTransfer(int blockSize) : IKvTransferStore
{
    public const string Dtype = "mocker";

    public bool CanImport(KvTransferPayload payload) => payload.Layout.Dtype == Dtype;

    public void Import(BlockTable blocks, KvTransferPayload payload)
    {
        // Nothing to write: the blocks the core reserved are all the mocker models.
    }

    public KvTransferPayload Export(BlockTable blocks, int tokenCount) => new(
        new KvTransferLayout { Layers = 0, KvHeads = 0, HeadDim = 0, Dtype = Dtype, BlockSize = blockSize, TokenCount = tokenCount },
        ReadOnlyMemory<byte>.Empty);
}

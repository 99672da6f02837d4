using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Mocker;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Mocker;

/// <summary>
/// Every <see cref="EngineContractTests"/> test on the echo engine: no prefix cache (no hits, no KV events, an
/// empty dump), no KV to transfer, and a request generates at most its prompt.
/// </summary>
public sealed class EchoEngineContractTests : EngineContractTests
{
    private protected override string PoolFlag => "--num-gpu-blocks";

    private protected override string? KvTransferDtype => null;

    private protected override bool HasPrefixCache => false;

    private protected override int Generated(int promptLength, int maxTokens) => Math.Min(promptLength, maxTokens);

    private protected override IEngine Create(EngineSetup setup) => new EchoEngine(EchoEngineOptions.Default with
    {
        BlockSize = setup.BlockSize,
        NumGpuBlocks = setup.Blocks,
        MaxNumSeqs = setup.MaxNumSeqs,
        ContextLength = Context,
        VocabSize = Vocab,
    });

    private protected override Task<T> InspectAsync<T>(IEngine engine, Func<KvBlockPool, T> action) => ((EchoEngine)engine).Core.InspectAsync(action);

    private protected override void SetBeforeStep(IEngine engine, Action<long> hook) => ((EchoEngine)engine).Core.BeforeStep = hook;
}

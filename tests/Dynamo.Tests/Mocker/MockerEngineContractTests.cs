using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Mocker;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Mocker;

/// <summary>Every <see cref="EngineContractTests"/> test on the mocker, its steps sped up 1000 times.</summary>
public sealed class MockerEngineContractTests : EngineContractTests
{
    private protected override string PoolFlag => "--num-gpu-blocks";

    private protected override string? KvTransferDtype => MockerEngine.MockerKvDtype;

    private protected override IEngine Create(EngineSetup setup) => new MockerEngine(MockerOptions.Default with
    {
        SpeedupRatio = 1000,
        BlockSize = setup.BlockSize,
        NumGpuBlocks = setup.Blocks ?? 1024,
        MaxNumSeqs = setup.MaxNumSeqs,
        MaxNumBatchedTokens = setup.MaxNumBatchedTokens,
        PrefixCaching = setup.PrefixCaching,
        WorkerId = setup.WorkerId,
        ContextLength = Context,
        VocabSize = Vocab,
    });

    private protected override Task<T> InspectAsync<T>(IEngine engine, Func<KvBlockPool, T> action) => ((MockerEngine)engine).Core.InspectAsync(action);

    private protected override void SetBeforeStep(IEngine engine, Action<long> hook) => ((MockerEngine)engine).Core.BeforeStep = hook;
}

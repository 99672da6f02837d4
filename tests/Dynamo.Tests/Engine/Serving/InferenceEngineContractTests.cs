using Dynamo.Engine.KvCache;
using Dynamo.Engine.Models;
using Dynamo.Engine.Serving;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Kv;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.Engines;

namespace Dynamo.Tests.Engine.Serving;

/// <summary>Every <see cref="EngineContractTests"/> test on the built-in engine, running the tiny synthesized model.</summary>
public sealed class InferenceEngineContractTests : EngineContractTests
{
    private static readonly Lazy<ModelConfig> Config = new(() => ModelLoader.Load(TestModels.Tiny.Value).Config);

    private protected override string PoolFlag => "--kv-cache-memory";

    private protected override string? KvTransferDtype => EngineOptions.Default.KvCacheDtype.Name();

    private protected override IEngine Create(EngineSetup setup) => InferenceEngineTests.Create(TestModels.Tiny.Value, EngineOptions.Default with
    {
        BlockSize = setup.BlockSize,
        KvCacheMemory = PagedKvCache.BytesPerBlock(Config.Value, setup.BlockSize, EngineOptions.Default.KvCacheDtype) * (setup.Blocks ?? 1024),
        MaxNumSeqs = setup.MaxNumSeqs,
        MaxNumBatchedTokens = setup.MaxNumBatchedTokens,
        PrefixCaching = setup.PrefixCaching,
        WorkerId = setup.WorkerId,

        // The contract is the mocker's, whose step-time budget is off by default: admission by measured step times would
        // make the pool-pressure cases (preemption) depend on how loaded the machine is. StepBudget tests cover the budget.
        MaxStepMs = 0,
    });

    private protected override Task<T> InspectAsync<T>(IEngine engine, Func<KvBlockPool, T> action) => ((InferenceEngine)engine).Core.InspectAsync(action);

    private protected override void SetBeforeStep(IEngine engine, Action<long> hook) => ((InferenceEngine)engine).Core.BeforeStep = hook;
}

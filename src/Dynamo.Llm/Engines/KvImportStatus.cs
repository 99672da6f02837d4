namespace Dynamo.Llm.Engines;

/// <summary>How a <see cref="DeferredKvImport"/> ended (<see cref="KvImportOutcome.Status"/>).</summary>
public enum KvImportStatus
{
    /// <summary>The payload was written into the reserved blocks; the request skipped the prefill of those tokens.</summary>
    Imported = 1,

    /// <summary>No blocks were reserved (no KV store, too few free blocks, the token count not below the prompt length): prefilled locally.</summary>
    NotReserved = 2,

    /// <summary><see cref="DeferredKvImport.Fail"/> came first: the blocks were released and the request prefilled locally.</summary>
    Failed = 3,

    /// <summary>The payload could not be imported (layout, dtype, length or token count): prefilled locally, counted in <see cref="EngineStats.KvImportsRefused"/>.</summary>
    Refused = 4,

    /// <summary>The request ended before either (cancelled, its engine stopped, or rejected at submit).</summary>
    Cancelled = 5,
}

namespace Dynamo.Llm.Engines;

/// <summary>How a <see cref="DeferredKvImport"/> ended (<see cref="DeferredKvImport.Completed"/>), for the caller's logs and counters.</summary>
/// <param name="Status">Imported, or why the engine prefilled the tokens itself, or that the request ended first.</param>
/// <param name="Detail">One line saying what happened: the tokens imported, the refusal's cause, the reason given to <see cref="DeferredKvImport.Fail"/>.</param>
public sealed record KvImportOutcome(KvImportStatus Status, string Detail)
{
    /// <summary>Whether the KV was written into the engine's blocks (the request skipped those tokens' prefill).</summary>
    public bool Imported => Status == KvImportStatus.Imported;
}

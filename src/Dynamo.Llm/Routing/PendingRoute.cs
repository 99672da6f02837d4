namespace Dynamo.Llm.Routing;

/// <summary>A request on its way through <see cref="KvRouter"/>: its block hashes (a pooled array, returned when the decision completes) and its settings.</summary>
internal readonly record struct PendingRoute(ulong[] Hashes, int Blocks, int PromptTokens, double Weight, double Temperature, string? RequestId, IReadOnlySet<long>? Allowed)
{
    public bool Allows(KvWorkerState worker) => Allowed is null || Allowed.Contains(worker.WorkerId);
}

namespace Dynamo.Llm.Routing;

/// <summary>Each request to the next instance in id order.</summary>
internal sealed class RoundRobinRouterPolicy : IRouterPolicy
{
    private int _next = -1;

    public string Name => RouterPolicies.RoundRobin;

    public long Pick(IReadOnlyList<long> candidates) =>
        candidates[(int)((uint)Interlocked.Increment(ref _next) % (uint)candidates.Count)];
}

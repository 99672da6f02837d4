namespace Dynamo.Llm.Routing;

/// <summary>Each request to a uniformly random instance.</summary>
internal sealed class RandomRouterPolicy(Random random) : IRouterPolicy
{
    private readonly Lock _lock = new();

    public string Name => RouterPolicies.Random;

    public long Pick(IReadOnlyList<long> candidates)
    {
        lock (_lock)
        {
            return candidates[random.Next(candidates.Count)];
        }
    }
}

namespace Dynamo.Llm.Routing;

/// <summary>The router modes by name: the one place that turns --router-mode into a policy.</summary>
public static class RouterPolicies
{
    /// <summary>"round-robin".</summary>
    public const string RoundRobin = "round-robin";

    /// <summary>"random".</summary>
    public const string Random = "random";

    /// <summary>"kv": KV-aware routing by the endpoint's KvRouter (Dynamo.Llm/Routing); the policy object is round-robin, used only where the KV router does not apply.</summary>
    public const string Kv = "kv";

    /// <summary>Every accepted mode.</summary>
    public static IReadOnlyList<string> Names { get; } = [RoundRobin, Random, Kv];


    /// <summary>A new policy for one model; <see cref="ArgumentException"/> for an unknown mode.</summary>
    public static IRouterPolicy Create(string mode, System.Random? random = null) => mode switch
    {
        RoundRobin or Kv => new RoundRobinRouterPolicy(),
        Random => new RandomRouterPolicy(random ?? new System.Random()),
        _ => throw new ArgumentException($"unknown router mode '{mode}' ({string.Join(", ", Names)})", nameof(mode)),
    };
}

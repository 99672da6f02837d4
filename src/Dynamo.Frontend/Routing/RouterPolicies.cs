namespace Dynamo.Frontend.Routing;

/// <summary>The router modes by name: the one place that turns --router-mode into a policy.</summary>
public static class RouterPolicies
{
    /// <summary>"round-robin".</summary>
    public const string RoundRobin = "round-robin";

    /// <summary>"random".</summary>
    public const string Random = "random";

    /// <summary>"kv" (KV-aware routing: not implemented yet, falls back to round-robin).</summary>
    public const string Kv = "kv";

    /// <summary>Every accepted mode.</summary>
    public static IReadOnlyList<string> Names { get; } = [RoundRobin, Random, Kv];

    /// <summary>Whether <paramref name="mode"/> is accepted but served by another policy for now.</summary>
    public static bool IsFallback(string mode) => mode == Kv;

    /// <summary>A new policy for one model; <see cref="ArgumentException"/> for an unknown mode.</summary>
    public static IRouterPolicy Create(string mode, System.Random? random = null) => mode switch
    {
        RoundRobin or Kv => new RoundRobinRouterPolicy(),
        Random => new RandomRouterPolicy(random ?? new System.Random()),
        _ => throw new ArgumentException($"unknown router mode '{mode}' ({string.Join(", ", Names)})", nameof(mode)),
    };
}

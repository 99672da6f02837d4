namespace Dynamo.Llm.Routing;

/// <summary>The names of the router modes (<c>--router-mode</c>); Dynamo.Components' WorkerRouters turns a name into a router.</summary>
public static class RouterModes
{
    /// <summary>"round-robin": <see cref="RoundRobinWorkerRouter"/>.</summary>
    public const string RoundRobin = "round-robin";

    /// <summary>"random": <see cref="RandomWorkerRouter"/>.</summary>
    public const string Random = "random";

    /// <summary>"kv": KV-aware routing by cache overlap and load (<see cref="KvRouter"/>, or the shared Router component).</summary>
    public const string Kv = "kv";

    /// <summary>Every accepted mode.</summary>
    public static IReadOnlyList<string> Names { get; } = [RoundRobin, Random, Kv];
}

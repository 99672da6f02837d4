namespace Dynamo.Llm.Routing;

/// <summary>Chooses a model's worker instance for a request (one policy object per model).</summary>
public interface IRouterPolicy
{
    /// <summary>The mode name ("round-robin", "random").</summary>
    string Name { get; }

    /// <summary>Picks one of <paramref name="candidates"/> (never empty). Thread-safe.</summary>
    long Pick(IReadOnlyList<long> candidates);
}

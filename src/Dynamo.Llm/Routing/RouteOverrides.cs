namespace Dynamo.Llm.Routing;

/// <summary>
/// Per-request routing settings (the request's extension field); a null member keeps the router's
/// <see cref="KvRouterOptions"/> value.
/// </summary>
public sealed record RouteOverrides
{
    /// <summary>Overrides <see cref="KvRouterOptions.OverlapScoreWeight"/> (finite, 0 or more).</summary>
    public double? OverlapScoreWeight { get; init; }

    /// <summary>Overrides <see cref="KvRouterOptions.Temperature"/> (finite, 0 or more).</summary>
    public double? Temperature { get; init; }

    /// <summary>Shown in the decision log.</summary>
    public string? RequestId { get; init; }

    /// <summary>
    /// Only these workers may take the request (the instances that serve the request's model, less those
    /// that already failed it); null for every worker. When none of them is known to the router the
    /// request is refused like one with no worker.
    /// </summary>
    public IReadOnlySet<long>? AllowedWorkers { get; init; }
}

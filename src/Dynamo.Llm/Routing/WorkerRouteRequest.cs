namespace Dynamo.Llm.Routing;

/// <summary>One request to route: what a <see cref="IWorkerRouter"/> may look at.</summary>
public sealed record WorkerRouteRequest
{
    /// <summary>The request id (logs; the shared router component's decision log).</summary>
    public required string RequestId { get; init; }

    /// <summary>The prompt's token ids.</summary>
    public required IReadOnlyList<int> TokenIds { get; init; }

    /// <summary>
    /// The workers that may take it, ascending, never empty: the instances serving the request's model on
    /// this endpoint, less those that failed it, filtered for availability once by the caller.
    /// </summary>
    public required IReadOnlyList<long> Candidates { get; init; }

    /// <summary>Per-request override of the KV router's overlap weight (nvext); ignored by the other modes.</summary>
    public double? OverlapScoreWeight { get; init; }

    /// <summary>Per-request override of the KV router's temperature (nvext); ignored by the other modes.</summary>
    public double? Temperature { get; init; }
}

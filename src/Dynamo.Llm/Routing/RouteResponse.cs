using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>The router component's answer: the chosen worker (first and only frame of the stream).</summary>
public sealed record RouteResponse
{
    /// <summary>The chosen worker's instance id.</summary>
    [JsonPropertyName("worker_id")]
    public long WorkerId { get; init; }

    /// <summary>The chosen data-parallel rank of that worker (absent: a worker with one engine).</summary>
    [JsonPropertyName("dp_rank")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? DpRank { get; init; }

    /// <summary>Leading prompt blocks the router expects the worker to hold.</summary>
    [JsonPropertyName("overlap_blocks")]
    public int OverlapBlocks { get; init; }

    /// <summary>Prompt tokens the router expects to be served from the worker's cache.</summary>
    [JsonPropertyName("predicted_cached_tokens")]
    public int PredictedCachedTokens { get; init; }

    /// <summary>
    /// The decision's id at this replica, for the <see cref="RouteCompletion"/> that reports its cached tokens (absent from
    /// a router that takes none: the caller then only closes the stream).
    /// </summary>
    [JsonPropertyName("lease_id")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public long? LeaseId { get; init; }
}

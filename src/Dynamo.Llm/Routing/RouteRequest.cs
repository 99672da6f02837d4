using System.Text.Json.Serialization;

namespace Dynamo.Llm.Routing;

/// <summary>
/// What a frontend sends to a shared router component (Dynamo.Components' RouterServer, endpoint
/// <c>{ns}.router.route</c>; JSON, version 1). The stream it opens stays open while the request runs on
/// the chosen worker: closing it (end, error or cancel) releases the load the router charged.
/// </summary>
public sealed record RouteRequest
{
    /// <summary>Protocol version (1).</summary>
    [JsonPropertyName("version")]
    public int Version { get; init; } = 1;

    /// <summary>For the router's log.</summary>
    [JsonPropertyName("request_id")]
    public string? RequestId { get; init; }

    /// <summary>The prompt's token ids.</summary>
    [JsonPropertyName("token_ids")]
    public required IReadOnlyList<int> TokenIds { get; init; }

    /// <summary>The workers that may take it (those serving the request's model); null for any.</summary>
    [JsonPropertyName("allowed_workers")]
    public IReadOnlyList<long>? AllowedWorkers { get; init; }

    /// <summary>Per-request override of the overlap weight.</summary>
    [JsonPropertyName("kv_overlap_score_weight")]
    public double? OverlapScoreWeight { get; init; }

    /// <summary>Per-request override of the temperature.</summary>
    [JsonPropertyName("router_temperature")]
    public double? Temperature { get; init; }
}

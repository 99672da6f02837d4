using System.Text.Json.Serialization;

namespace Dynamo.Frontend.WebUi;

/// <summary>
/// One worker (and data-parallel rank) in GET /v1/dynamo/status: its card's model and role, its last load report
/// (null figures before the first), the requests routed to it and its share of them, and tokens/s it generated
/// through this frontend over the last seconds.
/// </summary>
internal sealed record StatusWorker
{
    [JsonPropertyName("worker_id")]
    public required string WorkerId { get; init; }

    [JsonPropertyName("dp_rank")]
    public int DpRank { get; init; }

    [JsonPropertyName("model")]
    public required string Model { get; init; }

    [JsonPropertyName("endpoint")]
    public required string Endpoint { get; init; }

    [JsonPropertyName("role")]
    public required string Role { get; init; }

    [JsonPropertyName("running")]
    public int? Running { get; init; }

    [JsonPropertyName("waiting")]
    public int? Waiting { get; init; }

    [JsonPropertyName("kv_blocks_used")]
    public int? KvBlocksUsed { get; init; }

    [JsonPropertyName("kv_blocks_total")]
    public int? KvBlocksTotal { get; init; }

    /// <summary>KV blocks in use, percent of the pool.</summary>
    [JsonPropertyName("kv_usage_percent")]
    public double? KvUsagePercent { get; init; }

    [JsonPropertyName("prefix_hit_rate")]
    public double? PrefixHitRate { get; init; }

    [JsonPropertyName("load_report_age_s")]
    public double? LoadReportAgeSeconds { get; init; }

    [JsonPropertyName("routed_requests")]
    public long RoutedRequests { get; init; }

    /// <summary>Fraction (0-1) of the requests routed for this model that went to this worker.</summary>
    [JsonPropertyName("routing_share")]
    public double RoutingShare { get; init; }

    [JsonPropertyName("tokens_per_second")]
    public double TokensPerSecond { get; init; }
}

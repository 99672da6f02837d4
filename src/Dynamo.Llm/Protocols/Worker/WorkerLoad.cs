using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.Worker;

/// <summary>
/// A worker's load, published every second on <c>dyn.{ns}.{comp}.events.load_metrics</c> (the router of
/// the KV-routing issue reads it; operators can watch it with <c>nats sub</c>).
/// </summary>
public sealed record WorkerLoad
{
    /// <summary>The worker's instance id.</summary>
    [JsonPropertyName("worker_id")]
    public long WorkerId { get; init; }

    /// <summary>The worker's data-parallel rank this report is of (absent: 0; a worker with --dp-size N sends one report per rank).</summary>
    [JsonPropertyName("dp_rank")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int DpRank { get; init; }

    /// <summary>Requests in the running batch.</summary>
    [JsonPropertyName("running")]
    public int Running { get; init; }

    /// <summary>Requests waiting for admission.</summary>
    [JsonPropertyName("waiting")]
    public int Waiting { get; init; }

    /// <summary>KV blocks in use.</summary>
    [JsonPropertyName("kv_blocks_used")]
    public int KvBlocksUsed { get; init; }

    /// <summary>KV blocks in the pool.</summary>
    [JsonPropertyName("kv_blocks_total")]
    public int KvBlocksTotal { get; init; }

    /// <summary>Fraction of prompt tokens served from the prefix cache so far.</summary>
    [JsonPropertyName("prefix_hit_rate")]
    public double PrefixHitRate { get; init; }

    /// <summary>Unix milliseconds when measured.</summary>
    [JsonPropertyName("timestamp_ms")]
    public long TimestampMs { get; init; }
}

using System.Text.Json.Serialization;

namespace Dynamo.Runtime;

/// <summary>
/// What an instance writes under <c>v1/instances/{ns}/{comp}/{ep}/{id:hex}</c> (JSON, snake_case; unknown
/// fields are ignored by readers, so fields may be added without a version bump).
/// </summary>
public sealed record InstanceRecord
{
    /// <summary>The namespace.</summary>
    [JsonPropertyName("namespace")]
    public required string Namespace { get; init; }

    /// <summary>The component.</summary>
    [JsonPropertyName("component")]
    public required string Component { get; init; }

    /// <summary>The endpoint.</summary>
    [JsonPropertyName("endpoint")]
    public required string Endpoint { get; init; }

    /// <summary>The instance id (its first lease id).</summary>
    [JsonPropertyName("instance_id")]
    public required long InstanceId { get; init; }

    /// <summary>How to reach it: "nats" or "inproc".</summary>
    [JsonPropertyName("transport")]
    public required string Transport { get; init; }

    /// <summary>The request-plane subject that reaches exactly this instance.</summary>
    [JsonPropertyName("subject")]
    public required string Subject { get; init; }

    /// <summary>The host name of the process (for operators).</summary>
    [JsonPropertyName("host")]
    public string? Host { get; init; }

    /// <summary>The process id (for operators).</summary>
    [JsonPropertyName("pid")]
    public int? Pid { get; init; }

    /// <summary>
    /// True while the instance drains (SIGTERM): clients send it no new request, and its streams in flight go
    /// on (it has not left). Absent otherwise.
    /// </summary>
    [JsonPropertyName("draining")]
    public bool? Draining { get; init; }

    /// <summary>
    /// The data-parallel ranks the instance serves behind its one subject (a worker started with --dp-size N: N
    /// engine replicas, each its own routing target; a request names one as its dp_rank). Absent: one, rank 0.
    /// </summary>
    [JsonPropertyName("dp_ranks")]
    public IReadOnlyList<int>? DataParallelRanks { get; init; }

    /// <summary>When it registered (unix milliseconds).</summary>
    [JsonPropertyName("started_ms")]
    public long StartedMs { get; init; }
}

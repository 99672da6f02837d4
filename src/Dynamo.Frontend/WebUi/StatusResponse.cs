using System.Text.Json.Serialization;

namespace Dynamo.Frontend.WebUi;

/// <summary>GET /v1/dynamo/status: what the web page's status view polls (the in-process figures /metrics exports, as JSON).</summary>
internal sealed record StatusResponse
{
    [JsonPropertyName("time_ms")]
    public long TimeMs { get; init; }

    [JsonPropertyName("models")]
    public required IReadOnlyList<StatusModel> Models { get; init; }

    [JsonPropertyName("workers")]
    public required IReadOnlyList<StatusWorker> Workers { get; init; }

    /// <summary>Generated tokens streamed by this frontend since it started.</summary>
    [JsonPropertyName("output_tokens")]
    public long OutputTokens { get; init; }

    /// <summary>Responses whose first token arrived, since it started.</summary>
    [JsonPropertyName("responses")]
    public long Responses { get; init; }

    [JsonPropertyName("tokens_per_second")]
    public double TokensPerSecond { get; init; }

    /// <summary>Mean time to first token since start (null before the first response).</summary>
    [JsonPropertyName("ttft_mean_s")]
    public double? TimeToFirstTokenMeanSeconds { get; init; }

    /// <summary>One point per second, oldest first, over the last <see cref="StatusSampler.HistorySeconds"/> seconds.</summary>
    [JsonPropertyName("history")]
    public required IReadOnlyList<StatusPoint> History { get; init; }
}

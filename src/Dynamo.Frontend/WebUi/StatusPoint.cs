using System.Text.Json.Serialization;

namespace Dynamo.Frontend.WebUi;

/// <summary>One second of the status history: tokens/s over the second, and the mean TTFT of the responses whose first token came in it (null: none).</summary>
internal sealed record StatusPoint(
    [property: JsonPropertyName("t_ms")] long TimeMs,
    [property: JsonPropertyName("tokens_per_second")] double TokensPerSecond,
    [property: JsonPropertyName("ttft_s")] double? TimeToFirstTokenSeconds);

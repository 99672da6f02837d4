using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>An OpenAI error object.</summary>
public sealed record ErrorDetail
{
    [JsonPropertyName("message")]
    public required string Message { get; init; }

    /// <summary>"invalid_request_error", "not_found_error", "rate_limit_error", "service_unavailable_error", "internal_error".</summary>
    [JsonPropertyName("type")]
    public required string Type { get; init; }

    /// <summary>The offending request field, or null.</summary>
    [JsonPropertyName("param")]
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Param { get; init; }

    /// <summary>A machine-readable code, or null.</summary>
    [JsonPropertyName("code")]
    [JsonIgnore(Condition = JsonIgnoreCondition.Never)]
    public string? Code { get; init; }
}

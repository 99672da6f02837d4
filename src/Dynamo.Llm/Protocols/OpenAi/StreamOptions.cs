using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary><c>stream_options</c>.</summary>
public sealed record StreamOptions
{
    /// <summary>Send a last chunk with the usage and no choices.</summary>
    [JsonPropertyName("include_usage")]
    public bool? IncludeUsage { get; init; }
}

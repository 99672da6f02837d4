using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>What a chunk adds to a choice's message (role on the first chunk only).</summary>
public sealed record ChatDelta
{
    /// <summary>An empty delta (the finishing chunk).</summary>
    public static ChatDelta Empty { get; } = new();

    [JsonPropertyName("role")]
    public string? Role { get; init; }

    [JsonPropertyName("content")]
    public string? Content { get; init; }
}

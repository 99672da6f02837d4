using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>One message of a chat request.</summary>
public sealed record ChatMessageRequest
{
    /// <summary>"system", "developer", "user", "assistant" or "tool".</summary>
    [JsonPropertyName("role")]
    public string? Role { get; init; }

    /// <summary>A string, or an array of <c>{"type":"text","text":...}</c> parts.</summary>
    [JsonPropertyName("content")]
    public JsonElement? Content { get; init; }

    /// <summary>Optional participant name (ignored).</summary>
    [JsonPropertyName("name")]
    public string? Name { get; init; }
}

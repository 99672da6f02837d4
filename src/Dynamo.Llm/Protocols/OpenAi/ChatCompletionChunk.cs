using System.Text.Json.Serialization;

namespace Dynamo.Llm.Protocols.OpenAi;

/// <summary>One server-sent event of a streaming chat completion (<c>chat.completion.chunk</c>).</summary>
public sealed record ChatCompletionChunk
{
    [JsonPropertyName("id")]
    public required string Id { get; init; }

    [JsonPropertyName("object")]
    public string Object { get; init; } = "chat.completion.chunk";

    [JsonPropertyName("created")]
    public long Created { get; init; }

    [JsonPropertyName("model")]
    public required string Model { get; init; }

    [JsonPropertyName("choices")]
    public required IReadOnlyList<ChatChunkChoice> Choices { get; init; }

    /// <summary>Only on the last chunk, when stream_options.include_usage (with empty choices).</summary>
    [JsonPropertyName("usage")]
    public Usage? Usage { get; init; }
}

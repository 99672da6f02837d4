using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Components.Processing;

/// <summary>What a frontend sends a Processor component: the OpenAI request body as the client sent it (version 1).</summary>
internal sealed record ProcessorRequest
{
    [JsonPropertyName("v")]
    public int Version { get; init; } = 1;

    /// <summary>"chat" (/v1/chat/completions) or "completions" (/v1/completions).</summary>
    [JsonPropertyName("kind")]
    public required string Kind { get; init; }

    /// <summary>The response id; worker request ids are <c>{id}-{choice}</c>.</summary>
    [JsonPropertyName("request_id")]
    public required string RequestId { get; init; }

    /// <summary>The OpenAI request, verbatim.</summary>
    [JsonPropertyName("body")]
    public required JsonElement Body { get; init; }
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace Dynamo.Components.Processing;

/// <summary>
/// What a frontend sends a Processor component: the OpenAI request body as the client sent it (version 1), and
/// for a request migrated from a processor that failed mid-stream, the output to continue from (version 2:
/// a processor that does not know <see cref="Resume"/> refuses it rather than start the text again).
/// </summary>
internal sealed record ProcessorRequest
{
    /// <summary>A new request.</summary>
    public const int NewVersion = 1;

    /// <summary>A request that continues one (with <see cref="Resume"/>).</summary>
    public const int ResumeVersion = 2;

    [JsonPropertyName("v")]
    public int Version { get; init; } = NewVersion;

    /// <summary>"chat" (/v1/chat/completions) or "completions" (/v1/completions).</summary>
    [JsonPropertyName("kind")]
    public required string Kind { get; init; }

    /// <summary>The response id; worker request ids are <c>{id}-{choice}</c>.</summary>
    [JsonPropertyName("request_id")]
    public required string RequestId { get; init; }

    /// <summary>The OpenAI request, verbatim.</summary>
    [JsonPropertyName("body")]
    public required JsonElement Body { get; init; }

    /// <summary>
    /// Version 2: the choices still to generate, each with the token ids streamed so far (the pipeline goes on
    /// after them); a choice not listed has finished. Null for a new request.
    /// </summary>
    [JsonPropertyName("resume")]
    public IReadOnlyList<ResumedChoice>? Resume { get; init; }
}

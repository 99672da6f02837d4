using System.Text.Json;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Protocols.Worker;

namespace Dynamo.Components.Processing;

/// <summary>
/// One choice's side of its worker stream: each generate-response frame read and postprocessed into a
/// <see cref="ChoiceEvent"/>. What the pipeline does per token, apart from routing. Not thread-safe: one
/// per choice.
/// </summary>
internal sealed class ChoiceFrames(int index, string requestId, ChoicePostprocessor post)
{
    /// <summary>The choice's postprocessor.</summary>
    public ChoicePostprocessor Postprocessor => post;

    /// <summary>Whether the last frame carried the worker's finish reason.</summary>
    public bool WorkerFinished { get; private set; }

    /// <summary>The prefix-cache count of the last frame (on the worker's last frame).</summary>
    public int? WorkerCachedTokens { get; private set; }

    /// <summary>
    /// Reads one frame and postprocesses it. Throws for a malformed frame and, as an
    /// <see cref="OpenAiException"/>, for a worker that cancelled the request.
    /// </summary>
    public ChoiceEvent Push(ReadOnlySpan<byte> frame)
    {
        GenerateResponse response = JsonSerializer.Deserialize(frame, WorkerJsonContext.Default.GenerateResponse)
            ?? throw new InvalidDataException("null generate response");
        if (response.FinishReason == "cancelled")
        {
            throw OpenAiException.Unavailable($"The worker cancelled request {requestId} (it is shutting down?).", "worker_cancelled");
        }

        ChoiceDelta delta = post.Push(response);
        WorkerFinished = response.FinishReason is not null;
        WorkerCachedTokens = response.CachedTokens;
        return new ChoiceEvent(index, delta, response.TokenIds.Count, post.CompletionTokens, post.CachedTokens, null);
    }
}

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
    private readonly GenerateResponseReader _frame = new();

    /// <summary>The choice's postprocessor.</summary>
    public ChoicePostprocessor Postprocessor => post;

    /// <summary>Whether the last frame carried the worker's finish reason.</summary>
    public bool WorkerFinished { get; private set; }

    /// <summary>The prefix-cache count of the last frame (on the worker's last frame).</summary>
    public int? WorkerCachedTokens { get; private set; }

    /// <summary>Where the prefill ran, on the worker's last frame of a disaggregated request.</summary>
    public PrefillReport? WorkerPrefill { get; private set; }

    /// <summary>
    /// Reads one frame and postprocesses it. Throws for a malformed frame and, as an
    /// <see cref="OpenAiException"/>, for a worker that cancelled the request.
    /// </summary>
    /// <remarks>A frame of the usual shape without log probabilities allocates only its text (<see cref="GenerateResponseReader"/>).</remarks>
    public ChoiceEvent Push(ReadOnlySpan<byte> frame)
    {
        _frame.Read(frame);
        if (_frame.FinishReason == "cancelled")
        {
            throw OpenAiException.Unavailable($"The worker cancelled request {requestId} (it is shutting down?).", "worker_cancelled");
        }

        ChoiceDelta delta = post.Push(_frame);
        WorkerFinished = _frame.FinishReason is not null;
        WorkerCachedTokens = _frame.CachedTokens;
        WorkerPrefill = _frame.Prefill;
        return new ChoiceEvent(index, delta, _frame.TokenIds.Length, post.CompletionTokens, post.CachedTokens, null);
    }
}

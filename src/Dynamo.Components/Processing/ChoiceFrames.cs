using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Protocols.Worker;

namespace Dynamo.Components.Processing;

/// <summary>
/// One choice's side of its worker stream: each generate-response frame read and postprocessed into a
/// <see cref="ChoiceEvent"/>. What the pipeline does per token, apart from routing. Not thread-safe: one
/// per choice.
/// </summary>
/// <param name="index">The choice's index.</param>
/// <param name="requestId">The worker request id (for errors).</param>
/// <param name="post">The choice's postprocessor.</param>
/// <param name="expectedTokens">Room reserved up front for the output token ids (max_tokens, capped at
/// <see cref="MaxReservedTokens"/>), so that recording them costs nothing per token.</param>
internal sealed class ChoiceFrames(int index, string requestId, ChoicePostprocessor post, int expectedTokens = 0)
{
    /// <summary>The most output token ids reserved up front; a longer output grows its list as it comes.</summary>
    public const int MaxReservedTokens = 4096;

    private readonly GenerateResponseReader _frame = new();
    private readonly TokenLog _output = new(Math.Clamp(expectedTokens, 0, MaxReservedTokens));

    /// <summary>The error code of a stream its worker cancelled (shutting down).</summary>
    public const string WorkerCancelledCode = "worker_cancelled";

    /// <summary>The choice's postprocessor.</summary>
    public ChoicePostprocessor Postprocessor => post;

    /// <summary>
    /// The token ids the workers generated so far, in order, with those of an attempt before a processor's
    /// migration (<see cref="Resume"/>): what a migrated attempt resumes from.
    /// </summary>
    public ReadOnlyMemory<int> OutputTokens => _output.All;

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
            throw OpenAiException.Unavailable($"The worker cancelled request {requestId} (it is shutting down?).", WorkerCancelledCode);
        }

        ChoiceDelta delta = post.Push(_frame);
        ReadOnlyMemory<int> ids = _output.Append(_frame.TokenIds);
        WorkerFinished = _frame.FinishReason is not null;
        WorkerCachedTokens = _frame.CachedTokens;
        WorkerPrefill = _frame.Prefill;
        return new ChoiceEvent(index, delta, ids.Length, post.CompletionTokens, post.CachedTokens, null) { TokenIds = ids };
    }

    /// <summary>
    /// Takes <paramref name="streamed"/>, the tokens another processor streamed to the client before it failed,
    /// as this choice's output so far (<see cref="ChoicePostprocessor.Replay"/>): what comes next continues the
    /// client's text exactly.
    /// </summary>
    public void Resume(ReadOnlySpan<int> streamed)
    {
        post.Replay(streamed);
        _output.Append(streamed);
    }
}

using System.Diagnostics;
using Dynamo.Llm.Scheduling;
using Dynamo.Llm.Tracing;

namespace Dynamo.Llm.Engines;

/// <summary>
/// When a traced request passed each phase in the engine (stamped by the engine loop, a few times per request,
/// never per token), and the spans recorded from them when it ends: <c>queue</c> (from submission, or from the
/// arrival of transferred KV, to the first step that runs it), <c>prefill</c> (to its first token) and
/// <c>decode</c> (to its last). Only a request with a trace context and a listener on
/// <see cref="DynamoTracing.Engine"/> has one.
/// </summary>
internal sealed class EngineTrace(ActivityContext parent, DateTime submitted)
{
    public ActivityContext Parent { get; } = parent;

    /// <summary>When it entered the scheduler's waiting queue (last time: a deferred import re-queues it when its KV arrives).</summary>
    public DateTime Queued { get; set; } = submitted;

    /// <summary>When a step first ran it (default: not yet).</summary>
    public DateTime Scheduled { get; set; }

    /// <summary>When its first token came (default: not yet).</summary>
    public DateTime FirstToken { get; set; }

    /// <summary>A trace for <paramref name="request"/> when it has a context (its own, else the caller's current span) and someone listens.</summary>
    public static EngineTrace? For(EngineRequest request)
    {
        if (!DynamoTracing.Engine.HasListeners())
        {
            return null;
        }

        ActivityContext parent = request.TraceParent != default ? request.TraceParent : Activity.Current?.Context ?? default;
        return parent == default ? null : new EngineTrace(parent, DateTime.UtcNow);
    }

    /// <summary>Records the phases the request went through, ending now (engine loop, once, when the request ends).</summary>
    public void Record(EngineRequest request, SequenceState sequence, int importedTokens, FinishReason? finish, Exception? error = null)
    {
        DateTime end = DateTime.UtcNow;
        Activity? queue = DynamoTracing.StartPast(DynamoTracing.Engine, DynamoTracing.Spans.Queue, Parent, Queued, Scheduled != default ? Scheduled : end);
        queue?.SetTag(DynamoTracing.Attributes.RequestId, request.Id);
        DynamoTracing.EndPast(queue);
        if (Scheduled == default)
        {
            return;
        }

        Activity? prefill = DynamoTracing.StartPast(DynamoTracing.Engine, DynamoTracing.Spans.Prefill, Parent, Scheduled, FirstToken != default ? FirstToken : end);
        if (prefill is not null)
        {
            prefill.SetTag(DynamoTracing.Attributes.RequestId, request.Id);
            prefill.SetTag(DynamoTracing.Attributes.PromptTokens, request.OriginalPromptLength);
            prefill.SetTag(DynamoTracing.Attributes.CachedTokens, Math.Clamp(sequence.CachedPromptTokens, 0, request.OriginalPromptLength));
            prefill.SetTag(DynamoTracing.Attributes.ImportedTokens, importedTokens);
            prefill.SetTag(DynamoTracing.Attributes.Preemptions, sequence.Preemptions);
            if (FirstToken == default)
            {
                SetOutcome(prefill, finish, error);
            }

            DynamoTracing.EndPast(prefill);
        }

        if (FirstToken == default)
        {
            return;
        }

        Activity? decode = DynamoTracing.StartPast(DynamoTracing.Engine, DynamoTracing.Spans.Decode, Parent, FirstToken, end);
        if (decode is not null)
        {
            decode.SetTag(DynamoTracing.Attributes.RequestId, request.Id);
            decode.SetTag(DynamoTracing.Attributes.CompletionTokens, sequence.OutputLength);
            SetOutcome(decode, finish, error);
            DynamoTracing.EndPast(decode);
        }
    }

    private static void SetOutcome(Activity span, FinishReason? finish, Exception? error)
    {
        if (error is not null)
        {
            span.SetStatus(ActivityStatusCode.Error, error.Message);
        }
        else if (finish is { } reason)
        {
            span.SetTag(DynamoTracing.Attributes.FinishReason, reason.ToWire());
        }
    }
}

using Dynamo.Components.Processing;

namespace Dynamo.Frontend.Http;

/// <summary>
/// One streamed response: each postprocessed event as its SSE chunks (written by the route's
/// <see cref="ResponseShape"/>) and the per-token metrics, then the usage chunk when asked for and [DONE].
/// The caller flushes. Per event it allocates nothing.
/// </summary>
internal sealed class StreamingResponse(SseWriter sse, GenerationInfo info, RequestTrace trace, ResponseShape shape, long created, TokenMetrics metrics)
{
    private readonly ResponseHead _head = new(trace.Id, trace.Model, created);
    private readonly bool[] _started = new bool[info.ChoiceCount];
    private readonly ChoiceEvent[] _totals = new ChoiceEvent[info.ChoiceCount];

    /// <summary>Writes the chunks of <paramref name="e"/>; throws the error of an error event.</summary>
    public void Write(in ChoiceEvent e)
    {
        if (e.Error is not null)
        {
            throw e.Error;
        }

        metrics.Observe(e);
        _totals[e.Index] = e;
        bool first = !_started[e.Index];
        _started[e.Index] = true;
        shape.WriteChunks(sse, _head, e, first, info);
    }

    /// <summary>The usage chunk (stream_options.include_usage) and [DONE].</summary>
    public void WriteEnd()
    {
        if (info.IncludeUsage)
        {
            shape.WriteUsageChunk(sse, _head, OpenAiHandler.UsageOf(info, _totals));
        }

        sse.WriteDone();
    }
}

using Dynamo.Components.Processing;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;

namespace Dynamo.Frontend.Http;

/// <summary>
/// One streamed response: each postprocessed event as its SSE chunks (and the per-token metrics), then the
/// usage chunk when asked for and [DONE]. The caller flushes.
/// </summary>
internal sealed class StreamingResponse
{
    private readonly SseWriter _sse;
    private readonly GenerationInfo _info;
    private readonly RequestTrace _trace;
    private readonly bool _chat;
    private readonly long _created;
    private readonly TokenMetrics _metrics;
    private readonly bool[] _started;
    private readonly ChoiceEvent[] _totals;

    public StreamingResponse(SseWriter sse, GenerationInfo info, RequestTrace trace, bool chat, long created, TokenMetrics metrics)
    {
        _sse = sse;
        _info = info;
        _trace = trace;
        _chat = chat;
        _created = created;
        _metrics = metrics;
        _started = new bool[info.ChoiceCount];
        _totals = new ChoiceEvent[info.ChoiceCount];
    }

    /// <summary>Writes the chunks of <paramref name="e"/>; throws the error of an error event.</summary>
    public void Write(in ChoiceEvent e)
    {
        if (e.Error is not null)
        {
            throw e.Error;
        }

        _metrics.Observe(e);
        _totals[e.Index] = e;
        ChoiceDelta d = e.Delta;
        bool hasLogprobs = d.Logprobs is { Count: > 0 };
        if (_chat)
        {
            if (!_started[e.Index])
            {
                _started[e.Index] = true;
                _sse.WriteData(ChatChunk(new ChatChunkChoice { Index = e.Index, Delta = new ChatDelta { Role = "assistant", Content = "" } }), OpenAiJsonContext.Default.ChatCompletionChunk);
            }

            if (d.Text.Length > 0 || hasLogprobs)
            {
                _sse.WriteData(ChatChunk(new ChatChunkChoice
                {
                    Index = e.Index,
                    Delta = new ChatDelta { Content = d.Text },
                    Logprobs = hasLogprobs ? new ChatLogprobs { Content = d.Logprobs! } : null,
                }), OpenAiJsonContext.Default.ChatCompletionChunk);
            }

            if (d.FinishReason is not null)
            {
                _sse.WriteData(ChatChunk(new ChatChunkChoice { Index = e.Index, Delta = ChatDelta.Empty, FinishReason = d.FinishReason }), OpenAiJsonContext.Default.ChatCompletionChunk);
            }
        }
        else
        {
            if (d.Text.Length > 0 || hasLogprobs)
            {
                _sse.WriteData(CompletionChunk(new CompletionChoice
                {
                    Index = e.Index,
                    Text = d.Text,
                    Logprobs = hasLogprobs ? ChoicePostprocessor.ToCompletionLogprobs([.. d.Logprobs!.Select(l => (l, d.TextOffset))], _info.TopLogprobs > 0) : null,
                }), OpenAiJsonContext.Default.CompletionResponse);
            }

            if (d.FinishReason is not null)
            {
                _sse.WriteData(CompletionChunk(new CompletionChoice { Index = e.Index, Text = "", FinishReason = d.FinishReason }), OpenAiJsonContext.Default.CompletionResponse);
            }
        }
    }

    /// <summary>The usage chunk (stream_options.include_usage) and [DONE].</summary>
    public void WriteEnd()
    {
        if (_info.IncludeUsage)
        {
            Usage usage = OpenAiHandler.UsageOf(_info, _totals);
            if (_chat)
            {
                _sse.WriteData(new ChatCompletionChunk { Id = _trace.Id, Created = _created, Model = _trace.Model, Choices = [], Usage = usage }, OpenAiJsonContext.Default.ChatCompletionChunk);
            }
            else
            {
                _sse.WriteData(new CompletionResponse { Id = _trace.Id, Created = _created, Model = _trace.Model, Choices = [], Usage = usage }, OpenAiJsonContext.Default.CompletionResponse);
            }
        }

        _sse.WriteDone();
    }

    private ChatCompletionChunk ChatChunk(ChatChunkChoice choice) =>
        new() { Id = _trace.Id, Created = _created, Model = _trace.Model, Choices = [choice] };

    private CompletionResponse CompletionChunk(CompletionChoice choice) =>
        new() { Id = _trace.Id, Created = _created, Model = _trace.Model, Choices = [choice] };
}

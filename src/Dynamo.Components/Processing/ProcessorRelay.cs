using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Components.Processing;

/// <summary>
/// The frontend's side of a Processor component: sends the request body to one processor instance and
/// turns its frames back into a <see cref="Generation"/>. Errors before the start frame are thrown (the
/// HTTP status is still free); later ones end the event stream. When no processor answers at all (the
/// last one just left and discovery has not said so yet), the caller preprocesses itself.
/// </summary>
internal static class ProcessorRelay
{
    /// <summary>
    /// Sends the request to a processor; <paramref name="bufferCapacity"/> deltas may wait for the HTTP writer
    /// (<see cref="ProcessorOptions.ChoiceBufferCapacity"/>). Null when no processor answered (the client tried
    /// every one it lists): nothing ran anywhere, and the caller runs the pipeline itself.
    /// </summary>
    public static async Task<Generation?> TryStartAsync(EndpointClient processors, ReadOnlyMemory<byte> body, ResponseShape shape, string requestId, int bufferCapacity, CancellationToken cancellationToken)
    {
        ReadOnlyMemory<byte> payload = BuildRequest(body.Span, shape, requestId);
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        IAsyncEnumerator<ReadOnlyMemory<byte>> frames = processors.StreamAsync(payload, options: RequestOptions.Default with { RequestId = requestId }, cancellationToken: stop.Token)
            .GetAsyncEnumerator(stop.Token);
        GenerationInfo info;
        try
        {
            if (!await frames.MoveNextAsync().ConfigureAwait(false))
            {
                throw new OpenAiException(502, "internal_error", $"The processor ended request {requestId} without an answer.", null, "processor_stream_incomplete");
            }

            ProcessorFrame first = Parse(frames.Current.Span);
            if (first.Type == ProcessorFrame.ErrorType)
            {
                throw ToException(first);
            }

            if (first.Type != ProcessorFrame.StartType)
            {
                throw new OpenAiException(502, "internal_error", $"The processor's first frame for request {requestId} was '{first.Type}', not start.", null, "bad_processor_response");
            }

            info = new GenerationInfo(first.Choices, Math.Max(1, first.N), first.PromptTokens, first.Stream, first.IncludeUsage, (LogprobsFormat)first.Logprobs, first.TopLogprobs);
        }
        catch (RequestPlaneException e) when (e.InstanceFailed && !cancellationToken.IsCancellationRequested)
        {
            await frames.DisposeAsync().ConfigureAwait(false);
            stop.Dispose();
            return null;
        }
        catch (Exception e)
        {
            await frames.DisposeAsync().ConfigureAwait(false);
            stop.Dispose();
            throw e is RequestPlaneException r ? Map(r) : e;
        }

        var channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(bufferCapacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        Task pump = PumpAsync(frames, channel.Writer, stop.Token);
        return new Generation(info, channel.Reader, stop, pump);
    }

    private static async Task PumpAsync(IAsyncEnumerator<ReadOnlyMemory<byte>> frames, ChannelWriter<ChoiceEvent> events, CancellationToken cancellationToken)
    {
        await using IAsyncEnumerator<ReadOnlyMemory<byte>> owned = frames;
        try
        {
            while (await frames.MoveNextAsync().ConfigureAwait(false))
            {
                ChoiceEvent e = ReadEvent(frames.Current.Span);
                await events.WriteAsync(e, cancellationToken).ConfigureAwait(false);
                if (e.Error is not null)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            OpenAiException error = e is RequestPlaneException r ? Map(r)
                : new OpenAiException(502, "internal_error", $"Bad response from the processor: {e.Message}", null, "bad_processor_response");
            events.TryWrite(ChoiceEvent.Failed(0, error));
        }
        finally
        {
            events.TryComplete();
        }
    }

    /// <summary>
    /// The event of a delta or error frame after the start frame (an error frame's event carries the error
    /// and ends the answer); throws for any other frame. A delta of the usual shape is read without the
    /// serializer (<see cref="ProcessorDeltaReader"/>).
    /// </summary>
    internal static ChoiceEvent ReadEvent(ReadOnlySpan<byte> json) =>
        ProcessorDeltaReader.TryRead(json, out ChoiceEvent e) ? e : ReadEventWithSerializer(json);

    /// <summary><see cref="ReadEvent"/> through the serializer alone.</summary>
    internal static ChoiceEvent ReadEventWithSerializer(ReadOnlySpan<byte> json)
    {
        ProcessorFrame frame = Parse(json);
        if (frame.Type == ProcessorFrame.ErrorType)
        {
            return ChoiceEvent.Failed(frame.Index, ToException(frame));
        }

        if (frame.Type != ProcessorFrame.DeltaType)
        {
            throw new InvalidDataException($"unexpected frame '{frame.Type}'");
        }

        var delta = new ChoiceDelta(frame.Text ?? "", frame.TokenLogprobs, frame.TextOffset, frame.FinishReason);
        return new ChoiceEvent(frame.Index, delta, frame.NewTokens, frame.CompletionTokens, frame.CachedTokens, null);
    }

    /// <summary>The processor request around <paramref name="body"/>: one buffer, sized for it, not copied again.</summary>
    private static ReadOnlyMemory<byte> BuildRequest(ReadOnlySpan<byte> body, ResponseShape shape, string requestId)
    {
        var buffer = new ArrayBufferWriter<byte>(body.Length + 128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("v", 1);
            writer.WriteString("kind", shape.Kind);
            writer.WriteString("request_id", requestId);
            writer.WritePropertyName("body");
            writer.WriteRawValue(body, skipInputValidation: false);
            writer.WriteEndObject();
        }

        return buffer.WrittenMemory;
    }

    private static ProcessorFrame Parse(ReadOnlySpan<byte> json) =>
        JsonSerializer.Deserialize(json, ProcessorJsonContext.Default.ProcessorFrame) ?? throw new InvalidDataException("null processor frame");

    private static OpenAiException ToException(ProcessorFrame frame)
    {
        ErrorDetail detail = frame.Error ?? new ErrorDetail { Message = "The processor failed without details.", Type = "internal_error" };
        return new OpenAiException(frame.Status is >= 400 and <= 599 ? frame.Status : 502, detail.Type, detail.Message, detail.Param, detail.Code)
        {
            RetryAfterSeconds = frame.RetryAfter,
        };
    }

    private static OpenAiException Map(RequestPlaneException e) => e.Kind switch
    {
        RequestErrorKind.Remote => new OpenAiException(502, "internal_error", $"The processor failed: {e.Message}", null, e.Code),
        RequestErrorKind.Unavailable => OpenAiException.Unavailable($"The request plane is unavailable: {e.Message}", e.Code, 2),
        _ => OpenAiException.Unavailable($"No processor answered: {e.Message}", "processor_unreachable"),
    };
}

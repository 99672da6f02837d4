using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Components.Registry;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Processing;

/// <summary>
/// The frontend's side of a Processor component: sends the request body to one processor instance and
/// turns its frames back into a <see cref="Generation"/>. Errors before the start frame are thrown (the
/// HTTP status is still free); later ones end the event stream. When no processor answers at all (the
/// last one just left and discovery has not said so yet), the caller preprocesses itself. When the processor
/// fails mid-stream (gone, stalled, its frames lost), the request migrates: to another processor, or to the
/// frontend's own <see cref="GenerationPipeline"/> when none is left, with the token ids each choice's deltas
/// carried, so that the client's stream goes on exactly (see <see cref="RelayedStream"/>).
/// </summary>
/// <param name="registry">The frontend's models, options and migration counters.</param>
internal sealed partial class ProcessorRelay(ModelRegistry registry)
{
    /// <summary>The reason a processor's migration is counted under (<c>dynamo_frontend_migrations_total</c>).</summary>
    public const string MigrationReason = "processor";

    /// <summary>The error code of a processor stream that ended before every choice finished.</summary>
    public const string IncompleteCode = "processor_stream_incomplete";

    private readonly ModelRegistry _registry = registry;
    private readonly GenerationPipeline _pipeline = new(registry);
    private int _next;

    /// <summary>
    /// Sends the request to a processor; <see cref="ProcessorOptions.ChoiceBufferCapacity"/> deltas may wait for
    /// the HTTP writer. Null when no processor answered (every one listed was tried): nothing ran anywhere, and
    /// the caller runs the pipeline itself.
    /// </summary>
    /// <param name="processors">The processors of the namespace.</param>
    /// <param name="body">The client's body, relayed as it came.</param>
    /// <param name="request">The body read (for the frontend's own pipeline, should the request migrate to it).</param>
    /// <param name="shape">The route.</param>
    /// <param name="model">The model it names.</param>
    /// <param name="requestId">The response id.</param>
    /// <param name="cancellationToken">Ends the request (the client is gone).</param>
    public async Task<Generation?> TryStartAsync(EndpointClient processors, ReadOnlyMemory<byte> body, OpenAiRequestBase request, ResponseShape shape, ServedModel model, string requestId, CancellationToken cancellationToken)
    {
        var tried = new HashSet<long>();
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Attempt? first;
        try
        {
            first = await OpenAsync(processors, BuildRequest(body.Span, shape, requestId, null), requestId, tried, stop.Token).ConfigureAwait(false);
        }
        catch
        {
            stop.Dispose();
            throw;
        }

        if (first is null)
        {
            stop.Dispose();
            return null;
        }

        var channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(_registry.Options.ChoiceBufferCapacity) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
        var stream = new RelayedStream(this, processors, new Relayed(body, request, shape, model, requestId), first, tried);
        Task pump = stream.PumpAsync(channel.Writer, stop.Token);
        return new Generation(first.Info, channel.Reader, stop, pump);
    }

    /// <summary>
    /// The event of a delta or error frame after the start frame (an error frame's event carries the error
    /// and ends the answer); throws for any other frame. A delta of the usual shape is read without the
    /// serializer (<see cref="ProcessorDeltaReader"/>). The delta's token ids go to <paramref name="logs"/>[index]
    /// when given (the event's part of the log), else are copied.
    /// </summary>
    internal static ChoiceEvent ReadEvent(ReadOnlySpan<byte> json, TokenLog[]? logs = null) =>
        ProcessorDeltaReader.TryRead(json, out ChoiceEvent e, logs) ? e : ReadEventWithSerializer(json, logs);

    /// <summary><see cref="ReadEvent"/> through the serializer alone.</summary>
    internal static ChoiceEvent ReadEventWithSerializer(ReadOnlySpan<byte> json, TokenLog[]? logs = null)
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
        return new ChoiceEvent(frame.Index, delta, frame.NewTokens, frame.CompletionTokens, frame.CachedTokens, null)
        {
            TokenIds = ProcessorDeltaReader.Keep(frame.TokenIds is null ? [] : [.. frame.TokenIds], frame.Index, logs),
        };
    }

    /// <summary>
    /// The processor request around <paramref name="body"/>: one buffer, sized for it, not copied again. With
    /// <paramref name="resume"/> it is version 2 (a processor that only speaks 1 refuses it).
    /// </summary>
    internal static ReadOnlyMemory<byte> BuildRequest(ReadOnlySpan<byte> body, ResponseShape shape, string requestId, IReadOnlyList<ResumedChoice>? resume)
    {
        var buffer = new ArrayBufferWriter<byte>(body.Length + 128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("v", resume is null ? ProcessorRequest.NewVersion : ProcessorRequest.ResumeVersion);
            writer.WriteString("kind", shape.Kind);
            writer.WriteString("request_id", requestId);
            writer.WritePropertyName("body");
            writer.WriteRawValue(body, skipInputValidation: false);
            if (resume is not null)
            {
                writer.WritePropertyName("resume");
                JsonSerializer.Serialize(writer, resume, ProcessorJsonContext.Default.IReadOnlyListResumedChoice);
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenMemory;
    }

    /// <summary>
    /// Whether a processor's stream that failed with <paramref name="e"/> means the processor is gone, as
    /// <see cref="GenerationPipeline.MigrationReason"/> judges a worker's: unreachable, stopped, left, stalled
    /// past the idle timeout, or its frames lost in transport. Not an error the processor sent (its own
    /// pipeline has migrated what it could), nor one that would recur anywhere.
    /// </summary>
    internal static bool IsProcessorGone(Exception e) =>
        e is RequestPlaneException { Kind: not RequestErrorKind.Remote } r && GenerationPipeline.MigrationReason(r) is not null;

    /// <summary>
    /// Opens the request on a processor not in <paramref name="tried"/> (round robin), up to its start frame,
    /// going on to the next when one is gone or does not speak the request's version. Null when none is left.
    /// </summary>
    private async Task<Attempt?> OpenAsync(EndpointClient processors, ReadOnlyMemory<byte> payload, string requestId, HashSet<long> tried, CancellationToken cancellationToken)
    {
        for (int retry = 0; Pick(processors, tried) is long instance; retry++)
        {
            tried.Add(instance);
            var options = RequestOptions.Default with { RequestId = retry == 0 ? requestId : $"{requestId}-r{retry}" };
            IAsyncEnumerator<ReadOnlyMemory<byte>> frames = processors.StreamAsync(payload, instance, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
            try
            {
                if (!await frames.MoveNextAsync().ConfigureAwait(false))
                {
                    throw new OpenAiException(502, "internal_error", $"The processor ended request {requestId} without an answer.", null, IncompleteCode);
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

                return new Attempt(instance, frames, new GenerationInfo(first.Choices, Math.Max(1, first.N), first.PromptTokens, first.Stream, first.IncludeUsage, (LogprobsFormat)first.Logprobs, first.TopLogprobs));
            }
            catch (RequestPlaneException e) when ((e.InstanceFailed || e.Code == "unsupported_version") && !cancellationToken.IsCancellationRequested)
            {
                // It never ran there: the next one takes it.
                await frames.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                await frames.DisposeAsync().ConfigureAwait(false);
                throw e is RequestPlaneException r ? Map(r) : e;
            }
        }

        return null;
    }

    private long? Pick(EndpointClient processors, HashSet<long> tried)
    {
        long[] candidates = [.. processors.AvailableInstances.Select(r => r.InstanceId).Where(id => !tried.Contains(id))];
        return candidates.Length == 0 ? null : candidates[(int)((uint)Interlocked.Increment(ref _next) % (uint)candidates.Length)];
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

    /// <summary>A request as the client sent it, what any attempt starts from.</summary>
    private sealed record Relayed(ReadOnlyMemory<byte> Body, OpenAiRequestBase Request, ResponseShape Shape, ServedModel Model, string RequestId);

    /// <summary>One processor's answer, past its start frame.</summary>
    private sealed record Attempt(long Instance, IAsyncEnumerator<ReadOnlyMemory<byte>> Frames, GenerationInfo Info);

    /// <summary>
    /// One relayed request's events, across processors. Per choice it keeps the token ids the deltas carried
    /// (<see cref="TokenLog"/>, no copy per token) and whether it finished. When the processor's stream fails in
    /// a way that means the processor is gone (<see cref="IsProcessorGone"/>, or a stream that ended with
    /// choices unfinished), the request goes, at most <see cref="ProcessorOptions.MigrationLimit"/> times, to a
    /// processor not tried yet or else to the frontend's own pipeline, as version 2 with the unfinished choices
    /// and their tokens: the new pipeline replays them into its postprocessor and sends them to the worker as
    /// <c>resumed_output_tokens</c>, so its deltas continue the text the client has. A processor whose deltas
    /// carry no token ids (an older one) cannot be resumed from: its failure ends the stream, as before.
    /// </summary>
    private sealed class RelayedStream(ProcessorRelay relay, EndpointClient processors, Relayed request, Attempt first, HashSet<long> tried)
    {
        private readonly TokenLog[] _logs = [.. Enumerable.Range(0, first.Info.ChoiceCount).Select(_ => new TokenLog())];
        private readonly bool[] _finished = new bool[first.Info.ChoiceCount];
        private bool _resumable = true;

        private ModelRegistry Registry => relay._registry;

        public async Task PumpAsync(ChannelWriter<ChoiceEvent> events, CancellationToken cancellationToken)
        {
            Attempt current = first;
            int migrations = 0;
            try
            {
                while (true)
                {
                    Exception failure;
                    try
                    {
                        if (await RelayAsync(current.Frames, events, cancellationToken).ConfigureAwait(false) || _finished.All(f => f))
                        {
                            return;
                        }

                        failure = new OpenAiException(502, "internal_error", $"The processor's stream for request {request.RequestId} ended before every choice finished.", null, IncompleteCode);
                    }
                    catch (Exception e) when (IsProcessorGone(e) && !cancellationToken.IsCancellationRequested)
                    {
                        failure = e;
                    }
                    finally
                    {
                        await current.Frames.DisposeAsync().ConfigureAwait(false);
                    }

                    if (_finished.All(f => f))
                    {
                        // Broken after the last delta: nothing is missing.
                        return;
                    }

                    string from = EndpointAddress.FormatId(current.Instance);
                    if (!_resumable || migrations >= Registry.Options.MigrationLimit)
                    {
                        Registry.Migration.Exhausted(request.Model.Name);
                        Log.NotMigrated(Registry.Logger, request.RequestId, from, migrations, _resumable ? "--migration-limit" : "its deltas carry no token ids", failure.Message);
                        throw failure;
                    }

                    migrations++;
                    Registry.Migration.Migrated(request.Model.Name, MigrationReason);
                    IReadOnlyList<ResumedChoice> resume = [.. Enumerable.Range(0, _finished.Length).Where(i => !_finished[i]).Select(i => new ResumedChoice { Index = i, TokenIds = _logs[i].All.ToArray() })];
                    string attemptId = $"{request.RequestId}-p{migrations}";
                    Attempt? next = await relay.OpenAsync(processors, BuildRequest(request.Body.Span, request.Shape, attemptId, resume), attemptId, tried, cancellationToken).ConfigureAwait(false);
                    Log.Migrated(Registry.Logger, request.RequestId, from, next is null ? "this frontend's own pipeline" : "processor " + EndpointAddress.FormatId(next.Instance),
                        resume.Sum(c => c.TokenIds.Count), MigrationReason, failure.Message, migrations, Registry.Options.MigrationLimit);
                    if (next is null)
                    {
                        await RelayLocalAsync(resume, attemptId, events, cancellationToken).ConfigureAwait(false);
                        return;
                    }

                    if (next.Info.ChoiceCount != _finished.Length)
                    {
                        await next.Frames.DisposeAsync().ConfigureAwait(false);
                        RequireSameChoices(next.Info);
                    }

                    current = next;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                OpenAiException error = e switch
                {
                    OpenAiException o => o,
                    RequestPlaneException r => Map(r),
                    _ => new OpenAiException(502, "internal_error", $"Bad response from the processor: {e.Message}", null, "bad_processor_response"),
                };
                events.TryWrite(ChoiceEvent.Failed(0, error));
            }
            finally
            {
                events.TryComplete();
            }
        }

        /// <summary>Relays one processor's deltas until its stream ends (false) or an error event ended the answer (true).</summary>
        private async Task<bool> RelayAsync(IAsyncEnumerator<ReadOnlyMemory<byte>> frames, ChannelWriter<ChoiceEvent> events, CancellationToken cancellationToken)
        {
            while (await frames.MoveNextAsync().ConfigureAwait(false))
            {
                ChoiceEvent e = ReadEvent(frames.Current.Span, _logs);
                if (e.Error is null)
                {
                    if ((uint)e.Index >= (uint)_finished.Length)
                    {
                        throw new InvalidDataException($"choice {e.Index} of {_finished.Length}");
                    }

                    _resumable &= e.TokenIds.Length == e.NewTokens;
                    _finished[e.Index] |= e.Delta.FinishReason is not null;
                }

                await events.WriteAsync(e, cancellationToken).ConfigureAwait(false);
                if (e.Error is not null)
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>The rest of the request through the frontend's own pipeline (no processor left).</summary>
        private async Task RelayLocalAsync(IReadOnlyList<ResumedChoice> resume, string attemptId, ChannelWriter<ChoiceEvent> events, CancellationToken cancellationToken)
        {
            Generation local = await relay._pipeline.StartAsync(request.Request, request.Shape, request.Model, attemptId, resume, cancellationToken).ConfigureAwait(false);
            await using (local.ConfigureAwait(false))
            {
                RequireSameChoices(local.Info);
                await foreach (ChoiceEvent e in local.Events.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                {
                    await events.WriteAsync(e, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        private void RequireSameChoices(GenerationInfo info)
        {
            if (info.ChoiceCount != _finished.Length)
            {
                throw new InvalidDataException($"the request continued with {info.ChoiceCount} choices instead of {_finished.Length}");
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5302, Level = LogLevel.Warning, Message = "Request {RequestId} moved from processor {From} to {To} after {Tokens} tokens ({Reason}: {Detail}); migration {Migration} of at most {Limit}")]
        public static partial void Migrated(ILogger logger, string requestId, string from, string to, int tokens, string reason, string detail, int migration, int limit);

        [LoggerMessage(EventId = 5303, Level = LogLevel.Warning, Message = "Request {RequestId}: processor {From} failed ({Detail}) after {Migrations} migrations and cannot move ({Why}): it fails")]
        public static partial void NotMigrated(ILogger logger, string requestId, string from, int migrations, string why, string detail);
    }
}

using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Dynamo.Components.Registry;
using Dynamo.Frontend.Admission;
using Dynamo.Frontend.Observability;
using Dynamo.Components.Processing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Tracing;
using Dynamo.Runtime;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Net.Http.Headers;

namespace Dynamo.Frontend.Http;

/// <summary>
/// POST /v1/chat/completions and /v1/completions: read and validate the body, find the model, then either
/// relay the body to a Processor component (when one serves the namespace) or preprocess, route and
/// postprocess here (<see cref="GenerationPipeline"/>), and stream or gather the postprocessed output. Errors before the first byte of the response get their HTTP status;
/// after it, an SSE error event and [DONE].
/// </summary>
internal sealed partial class OpenAiHandler(ModelRegistry registry, FrontendMetrics metrics, FrontendOptions options, ILogger logger, Func<bool> shuttingDown, CancellationToken shutdown)
{
    private readonly GenerationPipeline _pipeline = new(registry);
    private readonly ProcessorRelay _relay = new(registry);
    private readonly AdmissionController _admission = new(options.Admission, metrics);

    private int _inflight;

    /// <summary>Requests being processed now.</summary>
    public int Inflight => Volatile.Read(ref _inflight);

    public Task ChatCompletionsAsync(HttpContext context) => HandleAsync(context, ResponseShape.Chat);

    public Task CompletionsAsync(HttpContext context) => HandleAsync(context, ResponseShape.Completions);

    /// <summary>Writes an OpenAI error response (with Retry-After for 429/503).</summary>
    public static async Task WriteErrorAsync(HttpResponse response, OpenAiException error, CancellationToken cancellationToken)
    {
        response.StatusCode = error.StatusCode;
        if (error.RetryAfterSeconds is int retry)
        {
            response.Headers.RetryAfter = retry.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        if (error.StatusCode is 429 or 503 && error.Code is { } reason)
        {
            response.Headers[OverloadErrors.ReasonHeader] = reason;
        }

        response.ContentType = "application/json";
        await response.WriteAsync(JsonSerializer.Serialize(error.ToResponse(), OpenAiJsonContext.Default.ErrorResponse), cancellationToken).ConfigureAwait(false);
    }

    private async Task HandleAsync(HttpContext context, ResponseShape shape)
    {
        Interlocked.Increment(ref _inflight);
        using Activity? span = DynamoTracing.Frontend.StartActivity(DynamoTracing.Spans.Frontend);
        var trace = new RequestTrace(shape.IdPrefix + Guid.NewGuid().ToString("N"), shape.Endpoint) { Span = span };
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, shutdown);
        var sse = new SseWriter(context.Response);
        bool counted = false;
        TimeSpan? deadline = null;
        try
        {
            if (shuttingDown())
            {
                throw OpenAiException.Unavailable("The frontend is shutting down.", "shutting_down");
            }

            RequireJsonContentType(context.Request.ContentType);
            ReadOnlyMemory<byte> body = await ReadBodyAsync(context, cancel.Token).ConfigureAwait(false);
            OpenAiRequestBase request = shape.ReadRequest(body.Span);
            string name = string.IsNullOrEmpty(request.Model) ? throw OpenAiException.BadRequest("'model' is required.", "model", "missing_model") : request.Model;
            ServedModel model = registry.Find(name) ?? throw OpenAiException.ModelNotFound(name);
            trace.Model = model.Name;
            trace.Stream = request.Stream == true;
            metrics.Inflight.WithLabels(trace.Model).Inc();
            counted = true;
            RequestControls controls = RequestControls.Read(context.Request, request, options.Admission);
            if ((deadline = controls.Deadline) is { } limit)
            {
                cancel.CancelAfter(limit > trace.Elapsed ? limit - trace.Elapsed : TimeSpan.Zero);
            }

            using AdmissionSlot slot = await AdmitAsync(controls, model.Name, cancel.Token).ConfigureAwait(false);
            metrics.Queued.WithLabels(trace.Model, FrontendMetrics.WorkerStage).Inc();
            trace.Queued = true;
            EndpointClient? processors = await registry.ProcessorsAsync().ConfigureAwait(false);
            if (processors is not null && model.State.GetPreprocessorAsync() is { IsCompletedSuccessfully: true } loaded)
            {
                // Far over the context: refused here rather than relayed (megabytes each way) to be refused there.
                (await loaded.ConfigureAwait(false)).RefuseFarOverContext(request);
            }

            Generation generation = (processors is null ? null
                    : await _relay.TryStartAsync(processors, body, request, shape, model, trace.Id, cancel.Token).ConfigureAwait(false))
                ?? await _pipeline.StartAsync(request, shape, model, trace.Id, null, cancel.Token).ConfigureAwait(false);
            await using (generation.ConfigureAwait(false))
            {
                // Whatever ends the response (done, error, client gone), disposing stops every worker stream.
                trace.PromptTokens = generation.Info.PromptTokens;
                if (generation.Info.Stream)
                {
                    await StreamAsync(sse, generation, trace, shape, cancel.Token).ConfigureAwait(false);
                }
                else
                {
                    await GatherAsync(context, generation, trace, shape, cancel.Token).ConfigureAwait(false);
                }
            }
        }
        catch (OpenAiException e)
        {
            await FailAsync(context, sse, trace, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e)
        {
            await FailAsync(context, sse, trace, e.StatusCode switch
            {
                StatusCodes.Status413PayloadTooLarge => TooLarge(),
                StatusCodes.Status408RequestTimeout => new OpenAiException(408, "invalid_request_error", $"The request body arrived too slowly: {e.Message}", null, "request_timeout"),
                _ => new OpenAiException(e.StatusCode, "invalid_request_error", e.Message, null, "bad_request"),
            }).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && context.RequestAborted.IsCancellationRequested)
        {
            trace.Status = 499;
            if (counted)
            {
                metrics.Cancellations.WithLabels(trace.Model).Inc();
            }
        }
        catch (OperationCanceledException) when (shutdown.IsCancellationRequested)
        {
            await FailAsync(context, sse, trace, OpenAiException.Unavailable("The frontend is shutting down.", "shutting_down")).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (deadline is { } limit && cancel.IsCancellationRequested)
        {
            // Nothing else cancels this token: the deadline passed. Disposing the generation stopped the workers' streams.
            await FailAsync(context, sse, trace, OverloadErrors.DeadlineExceededError(limit)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.RequestCrashed(logger, trace.Id, e);
            await FailAsync(context, sse, trace, new OpenAiException(500, "internal_error", $"Internal error: {e.Message}", null, "internal_error")).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _inflight);
            Finish(trace, counted);
        }
    }

    /// <summary>A place under the admission limits, waiting in an <c>admission</c> span when tracing.</summary>
    private async ValueTask<AdmissionSlot> AdmitAsync(RequestControls controls, string model, CancellationToken cancellationToken)
    {
        using Activity? span = DynamoTracing.Frontend.StartActivity(DynamoTracing.Spans.Admission);
        try
        {
            return await _admission.EnterAsync(controls.Client, model, controls.Priority, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException && span is not null)
        {
            span.SetStatus(ActivityStatusCode.Error, e.Message);
            throw;
        }
    }

    private async Task FailAsync(HttpContext context, SseWriter sse, RequestTrace trace, OpenAiException error)
    {
        trace.Status = error.StatusCode;
        if (error.StatusCode is 429 or 503 && trace.Model.Length > 0)
        {
            metrics.Rejections.WithLabels(trace.Model).Inc();
        }

        if (error.StatusCode is 429 or 503)
        {
            metrics.RejectedRequests.WithLabels(error.Code ?? "unknown").Inc();
        }

        try
        {
            if (sse.Started)
            {
                sse.WriteData(error.ToResponse(), OpenAiJsonContext.Default.ErrorResponse);
                sse.WriteDone();
                await sse.FlushAsync(context.RequestAborted).ConfigureAwait(false);
            }
            else if (!context.Response.HasStarted)
            {
                await WriteErrorAsync(context.Response, error, context.RequestAborted).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The client is gone.
        }
    }

    private void Finish(RequestTrace trace, bool counted)
    {
        TimeSpan elapsed = trace.Elapsed;
        if (trace.Span is { } span)
        {
            span.SetTag(DynamoTracing.Attributes.RequestId, trace.Id);
            span.SetTag(DynamoTracing.Attributes.Endpoint, trace.Endpoint);
            span.SetTag(DynamoTracing.Attributes.Model, trace.Model);
            span.SetTag(DynamoTracing.Attributes.Stream, trace.Stream);
            span.SetTag(DynamoTracing.Attributes.Status, trace.Status);
            span.SetTag(DynamoTracing.Attributes.PromptTokens, trace.PromptTokens);
            span.SetTag(DynamoTracing.Attributes.CompletionTokens, trace.CompletionTokens);
            if (trace.Status >= 500)
            {
                span.SetStatus(ActivityStatusCode.Error, $"status {trace.Status}");
            }
        }

        if (trace.Queued)
        {
            metrics.Queued.WithLabels(trace.Model, FrontendMetrics.WorkerStage).Dec();
        }

        if (counted)
        {
            metrics.Inflight.WithLabels(trace.Model).Dec();
            metrics.RequestDuration.WithLabels(trace.Model).Observe(elapsed.TotalSeconds);
            if (trace.Status == 200)
            {
                metrics.InputSequenceTokens.WithLabels(trace.Model).Observe(trace.PromptTokens);
                metrics.OutputSequenceTokens.WithLabels(trace.Model).Observe(trace.CompletionTokens);
            }
        }

        metrics.RequestsTotal.WithLabels(trace.Model, trace.Endpoint, trace.Stream ? "stream" : "unary", trace.Status == 200 ? "success" : "error").Inc();
        Log.RequestDone(logger, trace.Id, trace.Model.Length > 0 ? trace.Model : "-", trace.Endpoint, trace.Stream, trace.Status,
            trace.PromptTokens, trace.CompletionTokens, trace.TimeToFirstToken is { } t ? Math.Round(t.TotalMilliseconds, 1) : -1, Math.Round(elapsed.TotalMilliseconds, 1), trace.TraceId);
    }

    /// <summary>
    /// Refuses (415) a body that says it is not JSON text in UTF-8. Accepted: no Content-Type, application/json
    /// and application/*+json, and the defaults of clients that send JSON text without naming it
    /// (text/plain: .NET's StringContent; application/x-www-form-urlencoded: curl -d); a charset, if any, must be UTF-8.
    /// </summary>
    internal static void RequireJsonContentType(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType))
        {
            return;
        }

        bool json = MediaTypeHeaderValue.TryParse(contentType, out MediaTypeHeaderValue? type)
            && (type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
                || (type.Type.Equals("application", StringComparison.OrdinalIgnoreCase) && type.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase))
                || type.MediaType.Equals("text/plain", StringComparison.OrdinalIgnoreCase)
                || type.MediaType.Equals("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
            && (!type.Charset.HasValue || type.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase) || type.Charset.Equals("utf8", StringComparison.OrdinalIgnoreCase));
        if (!json)
        {
            throw new OpenAiException(415, "invalid_request_error", $"Content-Type '{contentType}' is not supported: send the request as JSON in UTF-8 ('Content-Type: application/json').", null, "unsupported_media_type");
        }
    }

    private OpenAiException TooLarge() =>
        new(413, "invalid_request_error", $"The request body is larger than the limit of {options.MaxRequestBodyBytes} bytes.", null, "request_too_large");

    /// <summary>
    /// The whole body, held once: into an array of exactly Content-Length bytes when the client sent one,
    /// else into a growing buffer whose written part is returned as it is (no copy).
    /// </summary>
    private async Task<ReadOnlyMemory<byte>> ReadBodyAsync(HttpContext context, CancellationToken cancellationToken)
    {
        long limit = options.MaxRequestBodyBytes;
        Stream body = context.Request.Body;
        if (context.Request.ContentLength is long length)
        {
            if (length > limit)
            {
                throw TooLarge();
            }

            var exact = new byte[length];
            int filled = 0;
            while (filled < exact.Length)
            {
                int read = await body.ReadAsync(exact.AsMemory(filled), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new OpenAiException(400, "invalid_request_error", $"The request body ended after {filled} of its {length} bytes.", null, "bad_request");
                }

                filled += read;
            }

            return exact;
        }

        var buffer = new ArrayBufferWriter<byte>(4096);
        while (true)
        {
            Memory<byte> chunk = buffer.GetMemory(16384);
            int read = await body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return buffer.WrittenMemory;
            }

            buffer.Advance(read);
            if (buffer.WrittenCount > limit)
            {
                throw TooLarge();
            }
        }
    }

    private async Task StreamAsync(SseWriter sse, Generation generation, RequestTrace trace, ResponseShape shape, CancellationToken cancellationToken)
    {
        var response = new StreamingResponse(sse, generation.Info, trace, shape, DateTimeOffset.UtcNow.ToUnixTimeSeconds(), new TokenMetrics(metrics, trace, generation.Info.ChoiceCount));
        using var reader = new ChoiceEventReader(generation.Events, sse, options.KeepAliveInterval);
        while (await reader.NextAsync(cancellationToken).ConfigureAwait(false) is ChoiceEvent e)
        {
            response.Write(e);
            await sse.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        cancellationToken.ThrowIfCancellationRequested(); // the end of a cancelled generation is no answer
        response.WriteEnd();
        await sse.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task GatherAsync(HttpContext context, Generation generation, RequestTrace trace, ResponseShape shape, CancellationToken cancellationToken)
    {
        GenerationInfo info = generation.Info;
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var tokens = new TokenMetrics(metrics, trace, info.ChoiceCount);
        var totals = new ChoiceEvent[info.ChoiceCount];
        var text = new StringBuilder[info.ChoiceCount];
        var logprobs = new List<(ChatTokenLogprob Entry, int TextOffset)>[info.ChoiceCount];
        for (int i = 0; i < info.ChoiceCount; i++)
        {
            text[i] = new StringBuilder();
            logprobs[i] = [];
        }

        using var reader = new ChoiceEventReader(generation.Events, null, options.KeepAliveInterval);
        while (await reader.NextAsync(cancellationToken).ConfigureAwait(false) is ChoiceEvent e)
        {
            if (e.Error is not null)
            {
                throw e.Error;
            }

            tokens.Observe(e);
            totals[e.Index] = e;
            text[e.Index].Append(e.Delta.Text);
            foreach (ChatTokenLogprob l in e.Delta.Logprobs ?? [])
            {
                logprobs[e.Index].Add((l, e.Delta.TextOffset));
            }
        }

        cancellationToken.ThrowIfCancellationRequested(); // the end of a cancelled generation is no answer

        var choices = new GatheredChoice[info.ChoiceCount];
        for (int i = 0; i < choices.Length; i++)
        {
            choices[i] = new GatheredChoice(text[i].ToString(), logprobs[i], totals[i].Delta.FinishReason);
        }

        context.Response.ContentType = "application/json";
        using (var json = new Utf8JsonWriter(context.Response.BodyWriter))
        {
            shape.WriteResponse(json, new ResponseHead(trace.Id, trace.Model, created), choices, UsageOf(info, totals), info);
        }

        await context.Response.BodyWriter.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Usage from the last event of each choice (its running totals); a prompt's cached tokens count once over its n samples.</summary>
    internal static Usage UsageOf(GenerationInfo info, ChoiceEvent[] last)
    {
        int prompt = info.PromptTokens;
        int completion = last.Sum(e => e.CompletionTokens);
        int cached = 0;
        for (int i = 0; i < last.Length; i += info.N)
        {
            cached += last[i].CachedTokens;
        }

        return new Usage
        {
            PromptTokens = prompt,
            CompletionTokens = completion,
            TotalTokens = prompt + completion,
            PromptTokensDetails = cached > 0 ? new PromptTokensDetails { CachedTokens = cached } : null,
        };
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5001, Level = LogLevel.Information,
            Message = "request {RequestId} model={Model} endpoint={Endpoint} stream={Stream} status={Status} tokens_in={PromptTokens} tokens_out={CompletionTokens} ttft_ms={TtftMs} duration_ms={DurationMs} trace_id={TraceId}")]
        public static partial void RequestDone(ILogger logger, string requestId, string model, string endpoint, bool stream, int status, int promptTokens, int completionTokens, double ttftMs, double durationMs, string traceId);

        [LoggerMessage(EventId = 5002, Level = LogLevel.Error, Message = "request {RequestId} failed with an unexpected error")]
        public static partial void RequestCrashed(ILogger logger, string requestId, Exception exception);
    }
}

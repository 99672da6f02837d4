using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Frontend.Models;
using Dynamo.Frontend.Observability;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Routing;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Dynamo.Frontend.Http;

/// <summary>
/// POST /v1/chat/completions and /v1/completions: read and validate the body, preprocess with the model's
/// tokenizer, send one generate request per choice to an instance the model's router picks, and stream or
/// gather the postprocessed output. Errors before the first byte of the response get their HTTP status;
/// after it, an SSE error event and [DONE].
/// </summary>
internal sealed partial class OpenAiHandler(ModelRegistry registry, FrontendMetrics metrics, FrontendOptions options, ILogger logger, Func<bool> shuttingDown, CancellationToken shutdown)
{
    private const string ChatEndpoint = "chat_completions";
    private const string CompletionsEndpoint = "completions";
    private const int ChoiceChannelCapacity = 64;

    private int _inflight;

    /// <summary>Requests being processed now.</summary>
    public int Inflight => Volatile.Read(ref _inflight);

    public Task ChatCompletionsAsync(HttpContext context) => HandleAsync(context, chat: true);

    public Task CompletionsAsync(HttpContext context) => HandleAsync(context, chat: false);

    /// <summary>Writes an OpenAI error response (with Retry-After for 429/503).</summary>
    public static async Task WriteErrorAsync(HttpResponse response, OpenAiException error, CancellationToken cancellationToken)
    {
        response.StatusCode = error.StatusCode;
        if (error.RetryAfterSeconds is int retry)
        {
            response.Headers.RetryAfter = retry.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        response.ContentType = "application/json";
        await response.WriteAsync(JsonSerializer.Serialize(error.ToResponse(), OpenAiJsonContext.Default.ErrorResponse), cancellationToken).ConfigureAwait(false);
    }

    private async Task HandleAsync(HttpContext context, bool chat)
    {
        Interlocked.Increment(ref _inflight);
        var trace = new RequestTrace((chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N"), chat ? ChatEndpoint : CompletionsEndpoint);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, shutdown);
        var sse = new SseWriter(context.Response);
        bool counted = false;
        try
        {
            if (shuttingDown())
            {
                throw OpenAiException.Unavailable("The frontend is shutting down.", "shutting_down");
            }

            byte[] body = await ReadBodyAsync(context, cancel.Token).ConfigureAwait(false);
            OpenAiRequestBase request = chat ? OpenAiRequestReader.ReadChat(body) : OpenAiRequestReader.ReadCompletion(body);
            string name = string.IsNullOrEmpty(request.Model) ? throw OpenAiException.BadRequest("'model' is required.", "model", "missing_model") : request.Model;
            ServedModel model = registry.Find(name) ?? throw OpenAiException.ModelNotFound(name);
            trace.Model = model.Name;
            trace.Stream = request.Stream == true;
            metrics.Inflight.WithLabels(trace.Model).Inc();
            counted = true;
            Preprocessor preprocessor;
            try
            {
                preprocessor = await model.State.GetPreprocessorAsync().WaitAsync(cancel.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw OpenAiException.Unavailable($"The tokenizer of model '{name}' could not be loaded: {e.GetBaseException().Message}", "tokenizer_unavailable", 5);
            }

            PreprocessedRequest pre = chat ? preprocessor.Preprocess((ChatCompletionRequest)request) : preprocessor.Preprocess((CompletionRequest)request);
            trace.PromptTokens = pre.Prompts.Sum(p => p.TokenIds.Count);
            await GenerateAsync(context, sse, preprocessor, pre, trace, chat, cancel.Token).ConfigureAwait(false);
        }
        catch (OpenAiException e)
        {
            await FailAsync(context, sse, trace, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e)
        {
            await FailAsync(context, sse, trace, e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? TooLarge()
                : new OpenAiException(e.StatusCode, "invalid_request_error", e.Message, null, "bad_request")).ConfigureAwait(false);
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

    private async Task FailAsync(HttpContext context, SseWriter sse, RequestTrace trace, OpenAiException error)
    {
        trace.Status = error.StatusCode;
        if (error.StatusCode is 429 or 503 && trace.Model.Length > 0)
        {
            metrics.Rejections.WithLabels(trace.Model).Inc();
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
        if (trace.Queued)
        {
            metrics.Queued.WithLabels(trace.Model).Dec();
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
            trace.PromptTokens, trace.CompletionTokens, trace.TimeToFirstToken is { } t ? Math.Round(t.TotalMilliseconds, 1) : -1, Math.Round(elapsed.TotalMilliseconds, 1));
    }

    private OpenAiException TooLarge() =>
        new(413, "invalid_request_error", $"The request body is larger than the limit of {options.MaxRequestBodyBytes} bytes.", null, "request_too_large");

    private async Task<byte[]> ReadBodyAsync(HttpContext context, CancellationToken cancellationToken)
    {
        long limit = options.MaxRequestBodyBytes;
        if (context.Request.ContentLength > limit)
        {
            throw TooLarge();
        }

        var buffer = new ArrayBufferWriter<byte>((int)Math.Min(context.Request.ContentLength ?? 4096, limit) + 1);
        Stream body = context.Request.Body;
        while (true)
        {
            Memory<byte> chunk = buffer.GetMemory(16384);
            int read = await body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                return buffer.WrittenSpan.ToArray();
            }

            buffer.Advance(read);
            if (buffer.WrittenCount > limit)
            {
                throw TooLarge();
            }
        }
    }

    private async Task GenerateAsync(HttpContext context, SseWriter sse, Preprocessor preprocessor, PreprocessedRequest pre, RequestTrace trace, bool chat, CancellationToken cancellationToken)
    {
        int choices = pre.ChoiceCount;
        var channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(ChoiceChannelCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        var post = new ChoicePostprocessor[choices];
        using var stopPumps = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pumps = new Task[choices];
        metrics.Queued.WithLabels(trace.Model).Inc();
        trace.Queued = true;
        for (int i = 0; i < choices; i++)
        {
            PromptInput prompt = pre.PromptOf(i);
            post[i] = new ChoicePostprocessor(preprocessor.Bundle.Tokenizer, prompt.TokenIds, pre.Sampling.Stop, pre.Logprobs != LogprobsFormat.None);
            byte[] payload = Preprocessor.BuildGenerateRequest($"{trace.Id}-{i}", prompt.TokenIds, pre.SamplingFor(i));
            pumps[i] = PumpAsync(pre.Model, i, payload, prompt.TokenIds, pre.NvExt, $"{trace.Id}-{i}", post[i], channel.Writer, stopPumps.Token);
        }

        _ = Task.WhenAll(pumps).ContinueWith(_ => channel.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        try
        {
            if (pre.Stream)
            {
                await StreamAsync(context, sse, pre, post, channel.Reader, trace, chat, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await GatherAsync(context, pre, post, channel.Reader, trace, chat, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            // Whatever ended the response (done, error, client gone), no worker keeps generating for it.
            await stopPumps.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(pumps).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task PumpAsync(string model, int index, byte[] payload, IReadOnlyList<int> tokens, NvExt? nvext, string requestId, ChoicePostprocessor post, ChannelWriter<ChoiceEvent> events, CancellationToken cancellationToken)
    {
        var tried = new HashSet<long>();
        var requestOptions = RequestOptions.Default with { RequestId = requestId };
        try
        {
            while (true)
            {
                (EndpointClient client, long instance, RoutingDecision? decision, IAsyncDisposable? lease) = await PickAsync(model, tokens, nvext, requestId, tried, cancellationToken).ConfigureAwait(false);
                using RoutingDecision? charged = decision;
                await using IAsyncDisposable? held = lease;
                tried.Add(instance);
                bool produced = false;
                try
                {
                    await foreach (ReadOnlyMemory<byte> frame in client.StreamAsync(payload, instance, requestOptions, cancellationToken).ConfigureAwait(false))
                    {
                        if (!produced)
                        {
                            decision?.MarkFirstToken();
                        }

                        produced = true;
                        GenerateResponse response = JsonSerializer.Deserialize(frame.Span, WorkerJsonContext.Default.GenerateResponse)
                            ?? throw new InvalidDataException("null generate response");
                        if (response.FinishReason == "cancelled")
                        {
                            throw OpenAiException.Unavailable($"The worker cancelled request {requestId} (it is shutting down?).", "worker_cancelled");
                        }

                        ChoiceDelta delta = post.Push(response);
                        if (response.FinishReason is not null)
                        {
                            decision?.Complete(response.CachedTokens);
                        }

                        await events.WriteAsync(new ChoiceEvent(index, delta, response.TokenIds.Count, null), cancellationToken).ConfigureAwait(false);
                        if (post.IsFinished)
                        {
                            return;
                        }
                    }

                    throw new OpenAiException(502, "internal_error", $"The worker's stream for request {requestId} ended without a finish reason.", null, "worker_stream_incomplete");
                }
                catch (RequestPlaneException e) when (e.InstanceFailed && !produced)
                {
                    client.ReportFailure(instance);
                    requestOptions = requestOptions with { RequestId = $"{requestId}-r{tried.Count}" };
                }
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
                _ => new OpenAiException(502, "internal_error", $"Bad response from the worker: {e.Message}", null, "bad_worker_response"),
            };
            if (!events.TryWrite(new ChoiceEvent(index, default, 0, error)))
            {
                try
                {
                    await events.WriteAsync(new ChoiceEvent(index, default, 0, error), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    // The response is already over.
                }
            }
        }
    }

    /// <summary>
    /// The worker for one choice: by the endpoint's KV router (cache overlap and load; the decision charges
    /// the load until the stream ends) with --router-mode kv, else by the model's round-robin/random policy.
    /// </summary>
    private async Task<(EndpointClient Client, long Instance, RoutingDecision? Decision, IAsyncDisposable? Lease)> PickAsync(
        string model, IReadOnlyList<int> tokens, NvExt? nvext, string requestId, HashSet<long> tried, CancellationToken cancellationToken)
    {
        if (registry.KvMode && registry.Find(model) is { } served)
        {
            ModelInstance[] left = [.. served.Instances.Where(i => !tried.Contains(i.InstanceId))];
            if (left.Length > 0 && await registry.RouterComponentAsync(left[0]).ConfigureAwait(false) is { } component
                && registry.ClientFor(left[0]) is { } workers)
            {
                return await RouteRemotelyAsync(component, workers, model, left, tokens, nvext, requestId, cancellationToken).ConfigureAwait(false);
            }

            if (left.Length > 0)
            {
                KvRouterService router = await registry.KvRouterAsync(left[0]).ConfigureAwait(false);
                var allowed = left.Where(i => i.Card.Endpoint == left[0].Card.Endpoint).Select(i => i.InstanceId).ToHashSet();
                int[] ids = tokens as int[] ?? [.. tokens];
                try
                {
                    RoutingDecision decision = await router.Router.RouteAsync(ids, new RouteOverrides
                    {
                        RequestId = requestId,
                        AllowedWorkers = allowed,
                        OverlapScoreWeight = nvext?.KvOverlapScoreWeight,
                        Temperature = nvext?.RouterTemperature,
                    }, cancellationToken).ConfigureAwait(false);
                    return (router.Client, decision.WorkerId, decision, null);
                }
                catch (RouterOverloadedException e) when (!e.Message.Contains("no worker", StringComparison.Ordinal))
                {
                    metrics.Rejections.WithLabels(model).Inc();
                    throw OpenAiException.Unavailable($"All workers of model '{model}' are busy: {e.Message}", "router_overloaded", Math.Max(1, (int)Math.Ceiling(e.RetryAfter.TotalSeconds)));
                }
                catch (RouterOverloadedException)
                {
                    // The router does not know these instances yet (just joined): the policy below takes them.
                }
                catch (ArgumentOutOfRangeException e)
                {
                    throw OpenAiException.BadRequest($"nvext: {e.Message}", "nvext", "invalid_value");
                }
            }
        }

        (EndpointClient client, long instance) = registry.Pick(model, tried) ?? throw (tried.Count == 0
            ? OpenAiException.Unavailable($"No worker instance of model '{model}' is available.", "no_instances")
            : OpenAiException.Unavailable($"No worker of model '{model}' answered ({tried.Count} tried).", "worker_unreachable"));
        return (client, instance, null, null);
    }

    /// <summary>
    /// Routing by the shared router component: its stream yields the chosen worker and stays open while
    /// the request runs (disposing the returned lease closes it, which releases the router's charge).
    /// </summary>
    private async Task<(EndpointClient Client, long Instance, RoutingDecision? Decision, IAsyncDisposable? Lease)> RouteRemotelyAsync(
        EndpointClient component, EndpointClient workers, string model, ModelInstance[] left, IReadOnlyList<int> tokens, NvExt? nvext, string requestId, CancellationToken cancellationToken)
    {
        byte[] payload = RouterServer.Serialize(new RouteRequest
        {
            RequestId = requestId,
            TokenIds = tokens,
            AllowedWorkers = [.. left.Where(i => i.Card.Endpoint == left[0].Card.Endpoint).Select(i => i.InstanceId)],
            OverlapScoreWeight = nvext?.KvOverlapScoreWeight,
            Temperature = nvext?.RouterTemperature,
        });
        IAsyncEnumerator<ReadOnlyMemory<byte>> stream = component.StreamAsync(payload, cancellationToken: cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            if (!await stream.MoveNextAsync().ConfigureAwait(false))
            {
                throw OpenAiException.Unavailable("The router ended without an answer.", "router_unavailable");
            }

            RouteResponse route = RouterServer.ParseResponse(stream.Current.Span);
            return (workers, route.WorkerId, null, stream);
        }
        catch (RequestPlaneException e) when (e.Code == "router_overloaded")
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            metrics.Rejections.WithLabels(model).Inc();
            throw OpenAiException.Unavailable($"All workers of model '{model}' are busy: {e.Message}", "router_overloaded", 1);
        }
        catch (RequestPlaneException e) when (e.Code == "invalid_request")
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw OpenAiException.BadRequest($"nvext: {e.Message}", "nvext", "invalid_value");
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static OpenAiException Map(RequestPlaneException e) => e.Kind switch
    {
        RequestErrorKind.Remote when e.Code == "invalid_request" => OpenAiException.BadRequest(e.Message, null, "invalid_request"),
        RequestErrorKind.Remote => new OpenAiException(500, "internal_error", $"The worker failed: {e.Message}", null, e.Code),
        _ => OpenAiException.Unavailable($"The worker is unreachable: {e.Message}", "worker_unreachable"),
    };

    /// <summary>Reads the next event, writing SSE keep-alive comments while none arrives; null at the end.</summary>
    private async ValueTask<ChoiceEvent?> NextAsync(ChannelReader<ChoiceEvent> reader, SseWriter? sse, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (reader.TryRead(out ChoiceEvent e))
            {
                return e;
            }

            Task<bool> ready = reader.WaitToReadAsync(cancellationToken).AsTask();
            if (sse is not null)
            {
                while (!ready.IsCompleted)
                {
                    using var delay = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    Task timer = Task.Delay(options.KeepAliveInterval, delay.Token);
                    if (await Task.WhenAny(ready, timer).ConfigureAwait(false) == timer)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        sse.WriteKeepAlive();
                        await sse.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        await delay.CancelAsync().ConfigureAwait(false);
                    }
                }
            }

            if (!await ready.ConfigureAwait(false))
            {
                return null;
            }
        }
    }

    private void Observe(RequestTrace trace, long[] lastToken, ChoiceEvent e)
    {
        if (e.NewTokens == 0)
        {
            return;
        }

        long now = Stopwatch.GetTimestamp();
        trace.CompletionTokens += e.NewTokens;
        metrics.OutputTokensTotal.WithLabels(trace.Model).Inc(e.NewTokens);
        if (trace.TimeToFirstToken is null)
        {
            trace.TimeToFirstToken = Stopwatch.GetElapsedTime(trace.Start, now);
            metrics.TimeToFirstToken.WithLabels(trace.Model).Observe(trace.TimeToFirstToken.Value.TotalSeconds);
            metrics.Queued.WithLabels(trace.Model).Dec();
            trace.Queued = false;
        }

        if (lastToken[e.Index] != 0)
        {
            double gap = Stopwatch.GetElapsedTime(lastToken[e.Index], now).TotalSeconds / e.NewTokens;
            for (int k = 0; k < e.NewTokens; k++)
            {
                metrics.InterTokenLatency.WithLabels(trace.Model).Observe(gap);
            }
        }

        lastToken[e.Index] = now;
    }

    private async Task StreamAsync(HttpContext context, SseWriter sse, PreprocessedRequest pre, ChoicePostprocessor[] post, ChannelReader<ChoiceEvent> reader, RequestTrace trace, bool chat, CancellationToken cancellationToken)
    {
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var lastToken = new long[post.Length];
        var started = new bool[post.Length];
        while (await NextAsync(reader, sse, cancellationToken).ConfigureAwait(false) is ChoiceEvent e)
        {
            if (e.Error is not null)
            {
                throw e.Error;
            }

            Observe(trace, lastToken, e);
            ChoiceDelta d = e.Delta;
            bool hasLogprobs = d.Logprobs is { Count: > 0 };
            if (chat)
            {
                if (!started[e.Index])
                {
                    started[e.Index] = true;
                    sse.WriteData(ChatChunk(trace, created, new ChatChunkChoice { Index = e.Index, Delta = new ChatDelta { Role = "assistant", Content = "" } }), OpenAiJsonContext.Default.ChatCompletionChunk);
                }

                if (d.Text.Length > 0 || hasLogprobs)
                {
                    sse.WriteData(ChatChunk(trace, created, new ChatChunkChoice
                    {
                        Index = e.Index,
                        Delta = new ChatDelta { Content = d.Text },
                        Logprobs = hasLogprobs ? new ChatLogprobs { Content = d.Logprobs! } : null,
                    }), OpenAiJsonContext.Default.ChatCompletionChunk);
                }

                if (d.FinishReason is not null)
                {
                    sse.WriteData(ChatChunk(trace, created, new ChatChunkChoice { Index = e.Index, Delta = ChatDelta.Empty, FinishReason = d.FinishReason }), OpenAiJsonContext.Default.ChatCompletionChunk);
                }
            }
            else
            {
                if (d.Text.Length > 0 || hasLogprobs)
                {
                    sse.WriteData(CompletionChunk(trace, created, new CompletionChoice
                    {
                        Index = e.Index,
                        Text = d.Text,
                        Logprobs = hasLogprobs ? ChoicePostprocessor.ToCompletionLogprobs([.. d.Logprobs!.Select(l => (l, d.TextOffset))], pre.Sampling.TopLogprobs > 0) : null,
                    }), OpenAiJsonContext.Default.CompletionResponse);
                }

                if (d.FinishReason is not null)
                {
                    sse.WriteData(CompletionChunk(trace, created, new CompletionChoice { Index = e.Index, Text = "", FinishReason = d.FinishReason }), OpenAiJsonContext.Default.CompletionResponse);
                }
            }

            await sse.FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        if (pre.IncludeUsage)
        {
            Usage usage = UsageOf(pre, post);
            if (chat)
            {
                sse.WriteData(new ChatCompletionChunk { Id = trace.Id, Created = created, Model = trace.Model, Choices = [], Usage = usage }, OpenAiJsonContext.Default.ChatCompletionChunk);
            }
            else
            {
                sse.WriteData(new CompletionResponse { Id = trace.Id, Created = created, Model = trace.Model, Choices = [], Usage = usage }, OpenAiJsonContext.Default.CompletionResponse);
            }
        }

        sse.WriteDone();
        await sse.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task GatherAsync(HttpContext context, PreprocessedRequest pre, ChoicePostprocessor[] post, ChannelReader<ChoiceEvent> reader, RequestTrace trace, bool chat, CancellationToken cancellationToken)
    {
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var lastToken = new long[post.Length];
        var text = new StringBuilder[post.Length];
        var logprobs = new List<(ChatTokenLogprob Entry, int TextOffset)>[post.Length];
        for (int i = 0; i < post.Length; i++)
        {
            text[i] = new StringBuilder();
            logprobs[i] = [];
        }

        while (await NextAsync(reader, null, cancellationToken).ConfigureAwait(false) is ChoiceEvent e)
        {
            if (e.Error is not null)
            {
                throw e.Error;
            }

            Observe(trace, lastToken, e);
            text[e.Index].Append(e.Delta.Text);
            foreach (ChatTokenLogprob l in e.Delta.Logprobs ?? [])
            {
                logprobs[e.Index].Add((l, e.Delta.TextOffset));
            }
        }

        bool withLogprobs = pre.Logprobs != LogprobsFormat.None;
        Usage usage = UsageOf(pre, post);
        context.Response.ContentType = "application/json";
        if (chat)
        {
            var response = new ChatCompletionResponse
            {
                Id = trace.Id,
                Created = created,
                Model = trace.Model,
                Choices = [.. post.Select((p, i) => new ChatChoice
                {
                    Index = i,
                    Message = new ChatResponseMessage { Content = text[i].ToString() },
                    Logprobs = withLogprobs ? new ChatLogprobs { Content = [.. logprobs[i].Select(l => l.Entry)] } : null,
                    FinishReason = p.FinishReason,
                })],
                Usage = usage,
            };
            await JsonSerializer.SerializeAsync(context.Response.Body, response, OpenAiJsonContext.Default.ChatCompletionResponse, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            var response = new CompletionResponse
            {
                Id = trace.Id,
                Created = created,
                Model = trace.Model,
                Choices = [.. post.Select((p, i) => new CompletionChoice
                {
                    Index = i,
                    Text = text[i].ToString(),
                    Logprobs = withLogprobs ? ChoicePostprocessor.ToCompletionLogprobs(logprobs[i], pre.Sampling.TopLogprobs > 0) : null,
                    FinishReason = p.FinishReason,
                })],
                Usage = usage,
            };
            await JsonSerializer.SerializeAsync(context.Response.Body, response, OpenAiJsonContext.Default.CompletionResponse, cancellationToken).ConfigureAwait(false);
        }
    }

    private static ChatCompletionChunk ChatChunk(RequestTrace trace, long created, ChatChunkChoice choice) =>
        new() { Id = trace.Id, Created = created, Model = trace.Model, Choices = [choice] };

    private static CompletionResponse CompletionChunk(RequestTrace trace, long created, CompletionChoice choice) =>
        new() { Id = trace.Id, Created = created, Model = trace.Model, Choices = [choice] };

    private static Usage UsageOf(PreprocessedRequest pre, ChoicePostprocessor[] post)
    {
        int prompt = pre.Prompts.Sum(p => p.TokenIds.Count);
        int completion = post.Sum(p => p.CompletionTokens);
        int cached = 0;
        for (int i = 0; i < post.Length; i += pre.N)
        {
            cached += post[i].CachedTokens;
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
            Message = "request {RequestId} model={Model} endpoint={Endpoint} stream={Stream} status={Status} tokens_in={PromptTokens} tokens_out={CompletionTokens} ttft_ms={TtftMs} duration_ms={DurationMs}")]
        public static partial void RequestDone(ILogger logger, string requestId, string model, string endpoint, bool stream, int status, int promptTokens, int completionTokens, double ttftMs, double durationMs);

        [LoggerMessage(EventId = 5002, Level = LogLevel.Error, Message = "request {RequestId} failed with an unexpected error")]
        public static partial void RequestCrashed(ILogger logger, string requestId, Exception exception);
    }
}

using System.Diagnostics;
using System.Threading.Channels;
using Dynamo.Components.Registry;
using Dynamo.Components.Tracing;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Engines;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Llm.Tracing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Processing;

/// <summary>
/// Preprocessing, routing and postprocessing in this process: the chat template and tokenizer of the
/// model's card, one generate request per choice to the worker the endpoint's <see cref="IWorkerRouter"/>
/// leases (whichever mode it is), the worker's tokens detokenized and cut at stop strings. An attempt whose
/// worker fails before its first token is retried on another candidate: here, and only here. The frontend
/// runs it unless a Processor component serves its namespace; the Processor component runs exactly this
/// behind its endpoint.
/// </summary>
internal sealed partial class GenerationPipeline(ModelRegistry registry)
{
    private static readonly HashSet<long> EmptyIds = [];
    private static readonly TimeSpan DownRecheckInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>A worker's last frame that never came, when every token max_tokens allowed had arrived.</summary>
    private static readonly byte[] FinishedFrame = "{\"token_ids\":[],\"finish_reason\":\"length\"}"u8.ToArray();

    /// <summary>
    /// Preprocesses <paramref name="request"/> (of <paramref name="shape"/>) for <paramref name="model"/> (throws <see cref="OpenAiException"/>
    /// for a client's mistake or a model whose tokenizer cannot load) and starts every choice; worker
    /// request ids are <c>{requestId}-{choice}</c>. With <paramref name="resume"/> (a request whose processor
    /// failed mid-stream) only the choices it lists run, each continuing after the tokens the client has.
    /// </summary>
    public async Task<Generation> StartAsync(OpenAiRequestBase request, ResponseShape shape, ServedModel model, string requestId, IReadOnlyList<ResumedChoice>? resume, CancellationToken cancellationToken)
    {
        Preprocessor preprocessor;
        PreprocessedRequest pre;
        using (Activity? span = DynamoTracing.Processor.StartActivity(DynamoTracing.Spans.Preprocess))
        {
            span?.SetTag(DynamoTracing.Attributes.Model, model.Name);
            try
            {
                preprocessor = await model.State.GetPreprocessorAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                span?.SetStatus(ActivityStatusCode.Error, e.GetBaseException().Message);
                throw OpenAiException.Unavailable($"The tokenizer of model '{model.Name}' could not be loaded: {e.GetBaseException().Message}", "tokenizer_unavailable", 5);
            }

            try
            {
                pre = shape.Preprocess(preprocessor, request);
            }
            catch (Exception e) when (TracedHandler.Failed(span, e, cancellationToken))
            {
                throw;
            }

            span?.SetTag(DynamoTracing.Attributes.Choices, pre.ChoiceCount);
            span?.SetTag(DynamoTracing.Attributes.PromptTokens, pre.Prompts.Sum(p => p.TokenIds.Count));
        }

        int choices = pre.ChoiceCount;
        IReadOnlyList<int>?[] streamed = StreamedOf(resume, choices);
        var channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(registry.Options.ChoiceBufferCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pumps = new List<Task>(choices);
        for (int i = 0; i < choices; i++)
        {
            if (streamed[i] is not { } output)
            {
                continue;
            }

            PromptInput prompt = pre.PromptOf(i);
            var post = new ChoicePostprocessor(preprocessor.Bundle.Tokenizer, prompt.TokenIds, pre.Sampling.Stop, pre.Logprobs != LogprobsFormat.None);
            GenerateRequest generate = Preprocessor.CreateGenerateRequest($"{requestId}-{i}", prompt.TokenIds, pre.SamplingFor(i));
            pumps.Add(PumpAsync(pre.Model, i, generate, output, pre.NvExt, post, channel.Writer, stop.Token));
        }

        Task all = Task.WhenAll(pumps);
        _ = all.ContinueWith(_ => channel.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        return new Generation(GenerationInfo.Of(pre), channel.Reader, stop, all);
    }

    /// <summary>
    /// Per choice, the output to continue from: empty for every choice of a new request; with
    /// <paramref name="resume"/>, the tokens it lists, and null for a choice it does not (finished already).
    /// </summary>
    private static IReadOnlyList<int>?[] StreamedOf(IReadOnlyList<ResumedChoice>? resume, int choices)
    {
        var streamed = new IReadOnlyList<int>?[choices];
        if (resume is null)
        {
            Array.Fill(streamed, []);
            return streamed;
        }

        foreach (ResumedChoice choice in resume)
        {
            if ((uint)choice.Index >= (uint)choices || streamed[choice.Index] is not null)
            {
                throw OpenAiException.BadRequest($"resume: choice {choice.Index} is not one of the {choices} choices, or is listed twice.", "resume", "invalid_value");
            }

            streamed[choice.Index] = choice.TokenIds;
        }

        return streamed;
    }

    private async Task PumpAsync(string model, int index, GenerateRequest generate, IReadOnlyList<int> streamed, NvExt? nvext, ChoicePostprocessor post, ChannelWriter<ChoiceEvent> events, CancellationToken cancellationToken)
    {
        string requestId = generate.RequestId!;
        var frames = new ChoiceFrames(index, requestId, post, generate.Sampling?.MaxTokens ?? SamplingParams.Default.MaxTokens);
        var tried = new HashSet<long>();
        var requestOptions = RequestOptions.Default with { RequestId = requestId };
        int migrations = 0;
        GenerateRequest attempt = generate;
        (string From, string Reason, string Detail)? moving = null;
        try
        {
            if (streamed.Count > 0)
            {
                // Another processor streamed these before it failed: the client has their text.
                frames.Resume([.. streamed]);
                if (post.IsFinished || Resume(generate, frames.OutputTokens.Span) is not { } resumed)
                {
                    await events.WriteAsync(frames.Push(FinishedFrame), cancellationToken).ConfigureAwait(false);
                    return;
                }

                attempt = resumed;
            }

            while (true)
            {
                RouteTarget target = await TargetAsync(model, tried, migrations, cancellationToken).ConfigureAwait(false);
                long routing = Stopwatch.GetTimestamp();
                await using WorkerLease lease = await TracedRouteAsync(target, model, attempt, nvext, tried.Count, cancellationToken).ConfigureAwait(false);
                if (target.Router is DisaggregatedRouter)
                {
                    registry.DisaggregationOf(model).ObserveRouteWait(Stopwatch.GetElapsedTime(routing));
                }

                tried.Add(lease.WorkerId);
                registry.Routing.Routed(model, lease.WorkerId);
                if (moving is { } move)
                {
                    Log.Migrated(registry.Logger, requestId, move.From, EndpointAddress.FormatId(lease.WorkerId), frames.OutputTokens.Length, move.Reason, move.Detail, migrations, registry.Options.MigrationLimit);
                    moving = null;
                }

                byte[] payload = Preprocessor.SerializeGenerateRequest(lease.Prepare(attempt));
                bool produced = false;
                int outputBefore = frames.OutputTokens.Length; // a resumed attempt's worker generates only what follows

                // The worker's spans are children of this one (the request plane carries it); ended with the attempt.
                using Activity? call = DynamoTracing.Processor.StartActivity(DynamoTracing.Spans.WorkerCall, ActivityKind.Client);
                call?.SetTag(DynamoTracing.Attributes.RequestId, requestOptions.RequestId);
                call?.SetTag(DynamoTracing.Attributes.WorkerId, EndpointAddress.FormatId(lease.WorkerId));
                try
                {
                    await foreach (ReadOnlyMemory<byte> frame in target.Workers.Client.StreamAsync(payload, lease.WorkerId, requestOptions, cancellationToken).ConfigureAwait(false))
                    {
                        if (!produced)
                        {
                            lease.MarkFirstToken();
                        }

                        produced = true;
                        ChoiceEvent e = frames.Push(frame.Span);
                        if (e.NewTokens > 0)
                        {
                            registry.Routing.Generated(lease.WorkerId, e.NewTokens);
                        }

                        if (frames.WorkerFinished)
                        {
                            lease.Complete(frames.WorkerCachedTokens, frames.OutputTokens.Length - outputBefore);
                            if (frames.WorkerPrefill is { } prefill)
                            {
                                registry.DisaggregationOf(model).Observe(prefill);
                            }
                        }

                        await events.WriteAsync(e, cancellationToken).ConfigureAwait(false);
                        if (post.IsFinished)
                        {
                            call?.SetTag(DynamoTracing.Attributes.CompletionTokens, frames.OutputTokens.Length);
                            return;
                        }
                    }

                    throw new OpenAiException(502, "internal_error", $"The worker's stream for request {requestId} ended without a finish reason.", null, "worker_stream_incomplete");
                }
                catch (Exception e) when (TracedHandler.Failed(call, e, cancellationToken))
                {
                    throw;
                }
                catch (RequestPlaneException e) when (e.InstanceFailed && !produced)
                {
                    // The request never ran there: the next candidate takes it.
                    target.Workers.Client.ReportFailure(lease.WorkerId);
                    requestOptions = requestOptions with { RequestId = $"{requestId}-r{tried.Count}" };
                }
                catch (RequestPlaneException e) when (!produced && IsOverloaded(e))
                {
                    // The worker refused before running anything (its waiting requests at their bound): the next
                    // candidate takes it, and when none is left the client hears that every worker is full.
                    if (registry.TargetFor(model, tried) is null)
                    {
                        throw WorkersOverloaded(model, tried.Count);
                    }

                    requestOptions = requestOptions with { RequestId = $"{requestId}-r{tried.Count}" };
                }
                catch (Exception e) when (MigrationReason(e) is { } reason && !cancellationToken.IsCancellationRequested)
                {
                    // The stream broke after it had started (or its first frames were lost in transport, as in a NATS
                    // restart): the request goes on elsewhere, from the tokens the client has.
                    if (migrations >= registry.Options.MigrationLimit)
                    {
                        registry.Migration.Exhausted(model);
                        Log.NotMigrated(registry.Logger, requestId, EndpointAddress.FormatId(lease.WorkerId), reason, migrations, e.Message);
                        throw;
                    }

                    if (e is RequestPlaneException { InstanceFailed: true })
                    {
                        target.Workers.Client.ReportFailure(lease.WorkerId);
                    }

                    migrations++;
                    registry.Migration.Migrated(model, reason);
                    moving = (EndpointAddress.FormatId(lease.WorkerId), reason, e.Message);
                    if (Resume(generate, frames.OutputTokens.Span) is not { } resumed)
                    {
                        // Every token max_tokens allowed had arrived; only the worker's last frame was lost.
                        ChoiceEvent last = frames.Push(FinishedFrame);
                        lease.Complete(null);
                        await events.WriteAsync(last, cancellationToken).ConfigureAwait(false);
                        return;
                    }

                    attempt = resumed;
                    requestOptions = requestOptions with { RequestId = $"{requestId}-m{migrations}" };
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
            if (!events.TryWrite(ChoiceEvent.Failed(index, error)))
            {
                try
                {
                    await events.WriteAsync(ChoiceEvent.Failed(index, error), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    // The response is already over.
                }
            }
        }
    }

    /// <summary>
    /// Where the next attempt goes: a model instance not tried yet. A migrating request whose every instance was
    /// tried may go back to one of them (a NATS restart breaks streams of healthy workers), and with none at all
    /// waits up to <see cref="ProcessorOptions.MigrationWaitTimeout"/> for one to appear (a restarted worker).
    /// </summary>
    private async Task<RouteTarget> TargetAsync(string model, HashSet<long> tried, int migrations, CancellationToken cancellationToken)
    {
        if (registry.TargetFor(model, tried) is { } target)
        {
            return target;
        }

        if (migrations > 0)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            wait.CancelAfter(registry.Options.MigrationWaitTimeout);
            while (true)
            {
                Task changed = registry.Changed;
                if (registry.TargetFor(model, EmptyIds) is { } any)
                {
                    // Back to a worker tried before, if the client has not seen it fail lately.
                    var up = new HashSet<long>(any.Workers.Client.AvailableInstances.Select(r => r.InstanceId));
                    long[] candidates = [.. any.Candidates.Where(up.Contains)];
                    if (candidates.Length > 0)
                    {
                        tried.ExceptWith(candidates);
                        return any with { Candidates = candidates };
                    }
                }

                try
                {
                    // A failure report lapses without a change of the cards: look again now and then.
                    await Task.WhenAny(changed, Task.Delay(DownRecheckInterval, wait.Token)).ConfigureAwait(false);
                    wait.Token.ThrowIfCancellationRequested();
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    registry.Migration.Exhausted(model);
                    throw OpenAiException.Unavailable(
                        $"No worker of model '{model}' was left to continue the request on (waited {registry.Options.MigrationWaitTimeout.TotalSeconds:0.#} s).", "worker_unreachable");
                }
            }
        }

        throw tried.Count > 0
            ? OpenAiException.Unavailable($"No worker of model '{model}' answered ({tried.Count} tried).", "worker_unreachable")
            : registry.HasOnlyPrefillWorkers(model)
                ? OpenAiException.Unavailable($"Model '{model}' has only prefill workers: a decode (or aggregated) worker must serve it too.", "no_decode_worker")
                : OpenAiException.Unavailable($"No worker instance of model '{model}' is available.", "no_instances");
    }

    /// <summary>
    /// Why a stream that failed after it started may go on elsewhere, or null when it may not: its worker died,
    /// stalled past the idle timeout, left discovery or stopped (<c>worker_unreachable</c>, <c>worker_stopped</c>),
    /// cancelled it while shutting down (<c>worker_cancelled</c>), failed inside (<c>worker_error</c>), or the
    /// request plane lost frames (<c>transport</c>). A refused request, a deadline, a consumer too slow for the
    /// plane or an oversized frame would fail again anywhere; with this process's request plane down past its
    /// bounded wait (<c>request_plane_unavailable</c>) so would every attempt: the client gets the 503.
    /// </summary>
    internal static string? MigrationReason(Exception e) => e switch
    {
        RequestPlaneException { Kind: RequestErrorKind.Unreachable, Code: "server_stopped" } => "worker_stopped",
        RequestPlaneException { Kind: RequestErrorKind.Unreachable or RequestErrorKind.NoResponders } => "worker_unreachable",
        RequestPlaneException { Kind: RequestErrorKind.Transport, Code: "ack_timeout" or "payload_too_large" } => null,
        RequestPlaneException { Kind: RequestErrorKind.Transport or RequestErrorKind.Interrupted } => "transport",
        RequestPlaneException { Kind: RequestErrorKind.Remote, Code: "invalid_request" or "unsupported_version" or "model_mismatch" } => null,
        RequestPlaneException { Kind: RequestErrorKind.Remote } => "worker_error",
        OpenAiException { Code: ChoiceFrames.WorkerCancelledCode } => "worker_cancelled",
        OpenAiException { Code: "worker_stream_incomplete" } => "worker_error",
        _ => null,
    };

    /// <summary>
    /// The request that continues <paramref name="original"/> after <paramref name="output"/>: the prompt and the
    /// output so far as its tokens, the output marked as such, max_tokens less what was generated. Null when
    /// max_tokens is used up already.
    /// </summary>
    internal static GenerateRequest? Resume(GenerateRequest original, ReadOnlySpan<int> output)
    {
        if (output.Length == 0)
        {
            return original;
        }

        GenerateSampling sampling = original.Sampling ?? new GenerateSampling();
        int maxTokens = sampling.MaxTokens ?? SamplingParams.Default.MaxTokens;
        if (output.Length >= maxTokens)
        {
            return null;
        }

        return original with
        {
            TokenIds = [.. original.TokenIds!, .. output],
            ResumedOutputTokens = output.Length,
            Sampling = sampling with { MaxTokens = maxTokens - output.Length },
        };
    }

    /// <summary>
    /// <see cref="RouteAsync"/> in a <c>route</c> span: the router's mode, the chosen worker, the prompt tokens it expects
    /// the worker to have cached, and the attempt (0 for the first).
    /// </summary>
    private static async Task<WorkerLease> TracedRouteAsync(RouteTarget target, string model, GenerateRequest generate, NvExt? nvext, int attempt, CancellationToken cancellationToken)
    {
        using Activity? span = DynamoTracing.Processor.StartActivity(DynamoTracing.Spans.Route);
        if (span is null)
        {
            return await RouteAsync(target, model, generate, nvext, cancellationToken).ConfigureAwait(false);
        }

        span.SetTag(DynamoTracing.Attributes.RouterMode, target.Router.Name);
        span.SetTag(DynamoTracing.Attributes.Attempt, attempt);
        span.SetTag(DynamoTracing.Attributes.PromptTokens, generate.TokenIds!.Count);
        try
        {
            WorkerLease lease = await RouteAsync(target, model, generate, nvext, cancellationToken).ConfigureAwait(false);
            span.SetTag(DynamoTracing.Attributes.WorkerId, EndpointAddress.FormatId(lease.WorkerId));
            span.SetTag(DynamoTracing.Attributes.PredictedCachedTokens, lease.PredictedCachedTokens);
            if (lease.DpRank is int rank)
            {
                span.SetTag(DynamoTracing.Attributes.DpRank, rank);
            }

            return lease;
        }
        catch (Exception e) when (TracedHandler.Failed(span, e, cancellationToken))
        {
            throw;
        }
    }

    /// <summary>
    /// A lease from the target endpoint's router, its rejections as the client's errors: a full queue or no
    /// worker 503 with Retry-After, a bad per-request override 400 naming nvext.
    /// </summary>
    private static async Task<WorkerLease> RouteAsync(RouteTarget target, string model, GenerateRequest generate, NvExt? nvext, CancellationToken cancellationToken)
    {
        try
        {
            return await target.Router.RouteAsync(new WorkerRouteRequest
            {
                RequestId = generate.RequestId!,
                TokenIds = generate.TokenIds!,
                Candidates = target.Candidates,
                OverlapScoreWeight = nvext?.KvOverlapScoreWeight,
                Temperature = nvext?.RouterTemperature,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (RouterRejectedException e) when (e.Reason == RouterRejection.InvalidRequest)
        {
            throw OpenAiException.BadRequest($"nvext: {e.Message}", "nvext", "invalid_value");
        }
        catch (RouterRejectedException e) when (e.Reason == RouterRejection.QueueFull)
        {
            throw Overloaded(model, e.Message, RetryAfterSeconds(e));
        }
        catch (RouterRejectedException e) when (e.Reason == RouterRejection.QueueTimeout)
        {
            throw OpenAiException.Unavailable($"All workers of model '{model}' stayed busy: {e.Message}", Routing.RouterServer.QueueTimeoutCode, RetryAfterSeconds(e));
        }
        catch (RouterRejectedException e) when (e.Reason == RouterRejection.NoWorker)
        {
            throw OpenAiException.Unavailable($"No worker instance of model '{model}' is available: {e.Message}", "no_instances", RetryAfterSeconds(e));
        }
    }

    private static int RetryAfterSeconds(RouterRejectedException e) => Math.Max(1, (int)Math.Ceiling(e.RetryAfter.TotalSeconds));

    private static OpenAiException Overloaded(string model, string reason, int retryAfterSeconds) =>
        OpenAiException.Unavailable($"All workers of model '{model}' are busy: {reason}", "router_overloaded", retryAfterSeconds);

    private static bool IsOverloaded(RequestPlaneException e) => e is { Kind: RequestErrorKind.Remote, Code: Workers.EngineWorker.OverloadedCode };

    private static OpenAiException WorkersOverloaded(string model, int tried) => OpenAiException.Unavailable(
        $"Every worker of model '{model}' refused the request: each has its maximum of waiting requests (--max-waiting-requests; {tried} tried).", "workers_overloaded", 1);

    private static OpenAiException Map(RequestPlaneException e) => e.Kind switch
    {
        _ when IsOverloaded(e) => OpenAiException.Unavailable($"The worker is overloaded: {e.Message}", "workers_overloaded", 1),
        RequestErrorKind.Remote when e.Code == "invalid_request" => OpenAiException.BadRequest(e.Message, null, "invalid_request"),
        RequestErrorKind.Remote => new OpenAiException(500, "internal_error", $"The worker failed: {e.Message}", null, e.Code),
        RequestErrorKind.Unavailable => OpenAiException.Unavailable($"The request plane is unavailable: {e.Message}", e.Code, 2),
        RequestErrorKind.Interrupted => OpenAiException.Unavailable($"The worker's stream was interrupted: {e.Message}", "stream_interrupted"),
        _ => OpenAiException.Unavailable($"The worker is unreachable: {e.Message}", "worker_unreachable"),
    };

    private static partial class Log
    {
        [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "Request {RequestId} moved from worker {From} to worker {To} after {Tokens} tokens ({Reason}: {Detail}); migration {Migration} of at most {Limit}")]
        public static partial void Migrated(ILogger logger, string requestId, string from, string to, int tokens, string reason, string detail, int migration, int limit);

        [LoggerMessage(EventId = 1202, Level = LogLevel.Warning, Message = "Request {RequestId}: worker {WorkerId} failed ({Reason}: {Detail}) and the request was migrated {Migrations} times already (--migration-limit): it fails")]
        public static partial void NotMigrated(ILogger logger, string requestId, string workerId, string reason, int migrations, string detail);
    }
}

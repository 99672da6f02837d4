using System.Diagnostics;
using System.Threading.Channels;
using Dynamo.Components.Registry;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Components.Processing;

/// <summary>
/// Preprocessing, routing and postprocessing in this process: the chat template and tokenizer of the
/// model's card, one generate request per choice to the worker the endpoint's <see cref="IWorkerRouter"/>
/// leases (whichever mode it is), the worker's tokens detokenized and cut at stop strings. An attempt whose
/// worker fails before its first token is retried on another candidate: here, and only here. The frontend
/// runs it unless a Processor component serves its namespace; the Processor component runs exactly this
/// behind its endpoint.
/// </summary>
internal sealed class GenerationPipeline(ModelRegistry registry)
{
    /// <summary>
    /// Preprocesses <paramref name="request"/> (of <paramref name="shape"/>) for <paramref name="model"/> (throws <see cref="OpenAiException"/>
    /// for a client's mistake or a model whose tokenizer cannot load) and starts every choice; worker
    /// request ids are <c>{requestId}-{choice}</c>.
    /// </summary>
    public async Task<Generation> StartAsync(OpenAiRequestBase request, ResponseShape shape, ServedModel model, string requestId, CancellationToken cancellationToken)
    {
        Preprocessor preprocessor;
        try
        {
            preprocessor = await model.State.GetPreprocessorAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw OpenAiException.Unavailable($"The tokenizer of model '{model.Name}' could not be loaded: {e.GetBaseException().Message}", "tokenizer_unavailable", 5);
        }

        PreprocessedRequest pre = shape.Preprocess(preprocessor, request);
        int choices = pre.ChoiceCount;
        var channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(registry.Options.ChoiceBufferCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pumps = new Task[choices];
        for (int i = 0; i < choices; i++)
        {
            PromptInput prompt = pre.PromptOf(i);
            var post = new ChoicePostprocessor(preprocessor.Bundle.Tokenizer, prompt.TokenIds, pre.Sampling.Stop, pre.Logprobs != LogprobsFormat.None);
            GenerateRequest generate = Preprocessor.CreateGenerateRequest($"{requestId}-{i}", prompt.TokenIds, pre.SamplingFor(i));
            pumps[i] = PumpAsync(pre.Model, i, generate, pre.NvExt, post, channel.Writer, stop.Token);
        }

        Task all = Task.WhenAll(pumps);
        _ = all.ContinueWith(_ => channel.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        return new Generation(GenerationInfo.Of(pre), channel.Reader, stop, all);
    }

    private async Task PumpAsync(string model, int index, GenerateRequest generate, NvExt? nvext, ChoicePostprocessor post, ChannelWriter<ChoiceEvent> events, CancellationToken cancellationToken)
    {
        string requestId = generate.RequestId!;
        var frames = new ChoiceFrames(index, requestId, post);
        var tried = new HashSet<long>();
        var requestOptions = RequestOptions.Default with { RequestId = requestId };
        try
        {
            while (true)
            {
                RouteTarget target = registry.TargetFor(model, tried) ?? throw (tried.Count > 0
                    ? OpenAiException.Unavailable($"No worker of model '{model}' answered ({tried.Count} tried).", "worker_unreachable")
                    : registry.HasOnlyPrefillWorkers(model)
                        ? OpenAiException.Unavailable($"Model '{model}' has only prefill workers: a decode (or aggregated) worker must serve it too.", "no_decode_worker")
                        : OpenAiException.Unavailable($"No worker instance of model '{model}' is available.", "no_instances"));
                long routing = Stopwatch.GetTimestamp();
                await using WorkerLease lease = await RouteAsync(target, model, generate, nvext, cancellationToken).ConfigureAwait(false);
                if (target.Router is DisaggregatedRouter)
                {
                    registry.DisaggregationOf(model).ObserveRouteWait(Stopwatch.GetElapsedTime(routing));
                }

                tried.Add(lease.WorkerId);
                byte[] payload = Preprocessor.SerializeGenerateRequest(lease.Prepare(generate));
                bool produced = false;
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
                        if (frames.WorkerFinished)
                        {
                            lease.Complete(frames.WorkerCachedTokens);
                            if (frames.WorkerPrefill is { } prefill)
                            {
                                registry.DisaggregationOf(model).Observe(prefill);
                            }
                        }

                        await events.WriteAsync(e, cancellationToken).ConfigureAwait(false);
                        if (post.IsFinished)
                        {
                            return;
                        }
                    }

                    throw new OpenAiException(502, "internal_error", $"The worker's stream for request {requestId} ended without a finish reason.", null, "worker_stream_incomplete");
                }
                catch (RequestPlaneException e) when (e.InstanceFailed && !produced)
                {
                    // The request never ran there: the next candidate takes it.
                    target.Workers.Client.ReportFailure(lease.WorkerId);
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
        catch (RouterRejectedException e) when (e.Reason == RouterRejection.NoWorker)
        {
            throw OpenAiException.Unavailable($"No worker instance of model '{model}' is available: {e.Message}", "no_instances", RetryAfterSeconds(e));
        }
    }

    private static int RetryAfterSeconds(RouterRejectedException e) => Math.Max(1, (int)Math.Ceiling(e.RetryAfter.TotalSeconds));

    private static OpenAiException Overloaded(string model, string reason, int retryAfterSeconds) =>
        OpenAiException.Unavailable($"All workers of model '{model}' are busy: {reason}", "router_overloaded", retryAfterSeconds);

    private static OpenAiException Map(RequestPlaneException e) => e.Kind switch
    {
        RequestErrorKind.Remote when e.Code == "invalid_request" => OpenAiException.BadRequest(e.Message, null, "invalid_request"),
        RequestErrorKind.Remote => new OpenAiException(500, "internal_error", $"The worker failed: {e.Message}", null, e.Code),
        RequestErrorKind.Unavailable => OpenAiException.Unavailable($"The request plane is unavailable: {e.Message}", e.Code, 2),
        RequestErrorKind.Interrupted => OpenAiException.Unavailable($"The worker's stream was interrupted: {e.Message}", "stream_interrupted"),
        _ => OpenAiException.Unavailable($"The worker is unreachable: {e.Message}", "worker_unreachable"),
    };
}

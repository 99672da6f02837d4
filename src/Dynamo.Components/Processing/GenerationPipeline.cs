using System.Text.Json;
using System.Threading.Channels;
using Dynamo.Components.Registry;
using Dynamo.Components.Routing;
using Dynamo.Llm.Preprocessing;
using Dynamo.Llm.Protocols.OpenAi;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Components.Processing;

/// <summary>
/// Preprocessing, routing and postprocessing in this process: the chat template and tokenizer of the
/// model's card, one generate request per choice to the worker the router picks (KV router component,
/// per-endpoint KV router, or the round-robin/random policy), the worker's tokens detokenized and cut at
/// stop strings. The frontend runs it unless a Processor component serves its namespace; the Processor
/// component runs exactly this behind its endpoint.
/// </summary>
internal sealed class GenerationPipeline(ModelRegistry registry)
{
    private const int ChoiceChannelCapacity = 64;

    /// <summary>
    /// Preprocesses <paramref name="request"/> for <paramref name="model"/> (throws <see cref="OpenAiException"/>
    /// for a client's mistake or a model whose tokenizer cannot load) and starts every choice; worker
    /// request ids are <c>{requestId}-{choice}</c>.
    /// </summary>
    public async Task<Generation> StartAsync(OpenAiRequestBase request, bool chat, ServedModel model, string requestId, CancellationToken cancellationToken)
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

        PreprocessedRequest pre = chat ? preprocessor.Preprocess((ChatCompletionRequest)request) : preprocessor.Preprocess((CompletionRequest)request);
        int choices = pre.ChoiceCount;
        var channel = Channel.CreateBounded<ChoiceEvent>(new BoundedChannelOptions(ChoiceChannelCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pumps = new Task[choices];
        for (int i = 0; i < choices; i++)
        {
            PromptInput prompt = pre.PromptOf(i);
            var post = new ChoicePostprocessor(preprocessor.Bundle.Tokenizer, prompt.TokenIds, pre.Sampling.Stop, pre.Logprobs != LogprobsFormat.None);
            byte[] payload = Preprocessor.BuildGenerateRequest($"{requestId}-{i}", prompt.TokenIds, pre.SamplingFor(i));
            pumps[i] = PumpAsync(pre.Model, i, payload, prompt.TokenIds, pre.NvExt, $"{requestId}-{i}", post, channel.Writer, stop.Token);
        }

        Task all = Task.WhenAll(pumps);
        _ = all.ContinueWith(_ => channel.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
        return new Generation(GenerationInfo.Of(pre), channel.Reader, stop, all);
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

                        await events.WriteAsync(new ChoiceEvent(index, delta, response.TokenIds.Count, post.CompletionTokens, post.CachedTokens, null), cancellationToken).ConfigureAwait(false);
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
                    throw Overloaded(model, e.Message, Math.Max(1, (int)Math.Ceiling(e.RetryAfter.TotalSeconds)));
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
    private static async Task<(EndpointClient Client, long Instance, RoutingDecision? Decision, IAsyncDisposable? Lease)> RouteRemotelyAsync(
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
            throw Overloaded(model, e.Message, 1);
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

    private static OpenAiException Overloaded(string model, string reason, int retryAfterSeconds) =>
        OpenAiException.Unavailable($"All workers of model '{model}' are busy: {reason}", "router_overloaded", retryAfterSeconds);

    private static OpenAiException Map(RequestPlaneException e) => e.Kind switch
    {
        RequestErrorKind.Remote when e.Code == "invalid_request" => OpenAiException.BadRequest(e.Message, null, "invalid_request"),
        RequestErrorKind.Remote => new OpenAiException(500, "internal_error", $"The worker failed: {e.Message}", null, e.Code),
        _ => OpenAiException.Unavailable($"The worker is unreachable: {e.Message}", "worker_unreachable"),
    };
}

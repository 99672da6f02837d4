using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Text.Json;
using Dynamo.Components.ModelCards;
using Dynamo.Components.Processing;
using Dynamo.Components.Routing;
using Dynamo.Llm.Disaggregation;
using Dynamo.Llm.ModelCards;
using Dynamo.Llm.Routing;
using Dynamo.Runtime;
using Dynamo.Runtime.Discovery;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Registry;

/// <summary>
/// The models served now, from the model cards under <c>v1/mdc/{namespace}/</c> (see README.md): a model
/// appears with the first card naming it and disappears with the last. One watch loop mutates the card
/// table and publishes an immutable snapshot; requests only read snapshots.
/// </summary>
internal sealed partial class ModelRegistry : IAsyncDisposable
{
    private readonly DistributedRuntime _runtime;
    private readonly ProcessorOptions _options;
    private readonly ILogger _logger;
    private readonly Dictionary<string, ModelInstance> _cards = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ModelState> _states = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, EndpointWorkers> _endpoints = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DisaggregationCounters> _disaggregation = new(StringComparer.Ordinal);
    private readonly Lazy<Task<EndpointClient>> _processors;
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private ImmutableDictionary<string, ServedModel> _models = ImmutableDictionary.Create<string, ServedModel>(StringComparer.Ordinal);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _watch = Task.CompletedTask;
    private DisaggregationSettingsStore? _settings;

    private ModelRegistry(DistributedRuntime runtime, ProcessorOptions options, ILogger logger)
    {
        _runtime = runtime;
        _options = options;
        _logger = logger;
        _processors = new Lazy<Task<EndpointClient>>(() => runtime.CreateClientAsync(ProcessorServer.AddressFor(options.Namespace)));
    }

    /// <summary>Request migration counts (the pipelines that use this registry).</summary>
    public MigrationCounters Migration { get; } = new();

    /// <summary>Routing decisions of the pipelines that use this registry, per worker.</summary>
    public RoutingCounters Routing { get; } = new();

    /// <summary>The last load report of every worker of the namespace (exported per worker on /metrics).</summary>
    public WorkerLoads Loads { get; private set; } = null!;

    /// <summary>Where the pipelines log.</summary>
    public ILogger Logger => _logger;

    /// <summary>Completes at the next change of the served models (a card added or removed).</summary>
    public Task Changed => Volatile.Read(ref _changed).Task;

    /// <summary>The settings it serves with.</summary>
    public ProcessorOptions Options => _options;

    /// <summary>The current snapshot, by served name.</summary>
    public ImmutableDictionary<string, ServedModel> Models => Volatile.Read(ref _models);

    /// <summary>The endpoint clients, one per endpoint any card named.</summary>
    public IReadOnlyCollection<EndpointClient> Clients => [.. _endpoints.Values.Select(e => e.Client)];

    /// <summary>Starts watching; returns once the existing cards are in.</summary>
    public static async Task<ModelRegistry> StartAsync(DistributedRuntime runtime, ProcessorOptions options, ILogger logger, CancellationToken cancellationToken)
    {
        var registry = new ModelRegistry(runtime, options, logger);
        registry.Loads = await WorkerLoads.StartAsync(runtime, options.Namespace, cancellationToken: cancellationToken).ConfigureAwait(false);
        registry._settings = await DisaggregationSettingsStore.StartAsync(runtime.Discovery, options.Namespace, logger, cancellationToken).ConfigureAwait(false);
        registry._watch = Task.Run(() => registry.WatchAsync(registry._stop.Token), CancellationToken.None);
        await registry._synced.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        return registry;
    }

    /// <summary>The model named <paramref name="name"/>, or null.</summary>
    public ServedModel? Find(string name) => Models.GetValueOrDefault(name);

    /// <summary>
    /// Waits until <paramref name="name"/> is served by at least <paramref name="instances"/> instances and its tokenizer
    /// is loaded; asked for more than one, until each is also listed by its endpoint's client (so that routing sees
    /// them all: a benchmark's deployment before its first request).
    /// </summary>
    public async Task WaitForModelAsync(string name, CancellationToken cancellationToken, int instances = 1)
    {
        while (true)
        {
            Task changed = Volatile.Read(ref _changed).Task;
            if (Find(name) is { } model && model.Instances.Length >= instances)
            {
                await model.State.GetPreprocessorAsync().WaitAsync(cancellationToken).ConfigureAwait(false);
                foreach (EndpointAddress endpoint in instances > 1 ? model.Endpoints : [])
                {
                    if (_endpoints.TryGetValue(endpoint.ToString(), out EndpointWorkers? workers))
                    {
                        await workers.Client.WaitForInstancesAsync(model.Instances.Count(i => i.Endpoint == endpoint), cancellationToken).ConfigureAwait(false);
                    }
                }

                return;
            }

            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Where the next attempt of a request for <paramref name="name"/> goes: the endpoint that serves it and
    /// its candidates, availability filtered once here, before any routing policy. Of the model's aggregated
    /// and decode instances not in <paramref name="tried"/>, those of the endpoint of the lowest instance id (a
    /// model served on two endpoints is rare: one of them takes the request). Prefill workers never take a
    /// request themselves: while the model has some, the target's router is a <see cref="DisaggregatedRouter"/>
    /// that may have one of them prefill for the decode worker. Null when no aggregated or decode instance is
    /// left (the model is not served, every instance was tried, or only prefill workers serve it).
    /// </summary>
    public RouteTarget? TargetFor(string name, IReadOnlySet<long> tried)
    {
        if (Find(name) is not { } model)
        {
            return null;
        }

        ModelInstance[] left = [.. model.Instances.Where(i => !tried.Contains(i.InstanceId) && !IsPrefill(i))];
        if (left.Length == 0 || !_endpoints.TryGetValue(left[0].Card.Endpoint, out EndpointWorkers? workers))
        {
            return null;
        }

        long[] candidates = workers.Candidates(left.Where(i => i.Card.Endpoint == left[0].Card.Endpoint).Select(i => i.InstanceId), tried);
        if (candidates.Length == 0)
        {
            return null;
        }

        IWorkerRouter router = workers.Router;
        ModelInstance[] prefill = [.. model.Instances.Where(IsPrefill)];
        if (prefill.Length > 0 && _endpoints.TryGetValue(prefill[0].Card.Endpoint, out EndpointWorkers? prefillWorkers))
        {
            long[] prefillCandidates = prefillWorkers.Candidates(prefill.Where(i => i.Card.Endpoint == prefill[0].Card.Endpoint).Select(i => i.InstanceId), EmptyIds);
            var pool = new PrefillPool(prefillWorkers, prefillCandidates, SettingsFor(name),
                id => model.Instances.FirstOrDefault(i => i.InstanceId == id)?.Card.RemotePrefill ?? true);
            router = new DisaggregatedRouter(router, pool, DisaggregationOf(name));
        }

        return new RouteTarget(workers, candidates, router);
    }

    /// <summary>The disaggregation settings in force for <paramref name="name"/>.</summary>
    public DisaggregationSettings SettingsFor(string name) => _settings?.For(name) ?? DisaggregationSettings.Default;

    /// <summary>Whether <paramref name="name"/> is served by prefill workers alone (nothing can take its requests).</summary>
    public bool HasOnlyPrefillWorkers(string name) => Find(name) is { } model && !model.Instances.IsEmpty && model.Instances.All(IsPrefill);

    /// <summary>The disaggregation decisions made for <paramref name="model"/> in this process (created on first use).</summary>
    public DisaggregationCounters DisaggregationOf(string model) => _disaggregation.GetOrAdd(model, _ => new DisaggregationCounters());

    /// <summary>Every model's disaggregation decisions so far.</summary>
    public IEnumerable<(string Model, DisaggregationCounters Counters)> Disaggregation() => _disaggregation.Select(p => (p.Key, p.Value)).ToArray();

    private static readonly IReadOnlySet<long> EmptyIds = new HashSet<long>();

    private static bool IsPrefill(ModelInstance instance) => instance.Card.Role == "prefill";

    /// <summary>
    /// A client of the namespace's Processor components (<c>{ns}.processor.generate</c>) when one is
    /// registered and neither draining nor failing lately, else null (this process preprocesses). The client
    /// follows discovery from the first call.
    /// </summary>
    public async Task<EndpointClient?> ProcessorsAsync()
    {
        EndpointClient client = await _processors.Value.ConfigureAwait(false);
        return client.AvailableInstances.Count > 0 ? client : null;
    }

    /// <summary>The router of <paramref name="endpoint"/>'s workers, once a card named that endpoint.</summary>
    public IWorkerRouter? RouterOf(EndpointAddress endpoint) => _endpoints.GetValueOrDefault(endpoint.ToString())?.Router;

    /// <summary>The counters of the KV routers this process runs (kv mode, routing locally), by endpoint.</summary>
    public IEnumerable<(string Endpoint, RouterStats Stats)> KvRouterStats() =>
        _endpoints.Select(e => (e.Key, Stats: (e.Value.Router as KvWorkerRouter)?.LocalStats)).Where(e => e.Stats is not null).Select(e => (e.Key, e.Stats!)).ToArray();

    public async ValueTask DisposeAsync()
    {
        if (_processors.IsValueCreated)
        {
            try
            {
                await (await _processors.Value.ConfigureAwait(false)).DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A client that failed to start has nothing to stop.
            }
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        await Loads.DisposeAsync().ConfigureAwait(false);
        if (_settings is not null)
        {
            await _settings.DisposeAsync().ConfigureAwait(false);
        }

        try
        {
            await _watch.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        foreach (EndpointWorkers workers in _endpoints.Values)
        {
            await workers.DisposeAsync().ConfigureAwait(false);
        }

        _stop.Dispose();
    }

    private Task WatchAsync(CancellationToken cancellationToken)
    {
        string prefix = $"{EndpointAddress.ModelCardsRoot}{_options.Namespace}/";
        return DiscoveryWatch.RunAsync(_runtime.Discovery, prefix, ApplyAsync, e => Log.WatchFailed(_logger, prefix, e), cancellationToken);
    }

    private async ValueTask ApplyAsync(DiscoveryEvent e, CancellationToken cancellationToken)
    {
        switch (e.Kind)
        {
            case DiscoveryEventKind.Put:
                await PutAsync(e.Key, e.Value, cancellationToken).ConfigureAwait(false);
                break;
            case DiscoveryEventKind.Delete:
                if (_cards.Remove(e.Key))
                {
                    Publish();
                }

                break;
            case DiscoveryEventKind.Synced:
                _synced.TrySetResult();
                break;
        }
    }

    private async Task PutAsync(string key, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        ModelDeploymentCard card;
        EndpointAddress endpoint;
        try
        {
            card = ModelCardJson.Deserialize(value.Span);
            endpoint = EndpointAddress.Parse(card.Endpoint);
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or ArgumentException)
        {
            Log.BadCard(_logger, key, e.Message);
            return;
        }

        if (EndpointAddress.ParseIdFromKey(key) is not long instanceId)
        {
            Log.BadCard(_logger, key, "the key does not end in an instance id");
            return;
        }

        if (!_endpoints.ContainsKey(card.Endpoint))
        {
            EndpointClient client = await _runtime.CreateClientAsync(endpoint, cancellationToken: cancellationToken).ConfigureAwait(false);
            // Prefill workers are always chosen KV-aware (longest cached prefix against load), whatever the mode.
            string mode = card.Role == "prefill" ? RouterModes.Kv : _options.RouterMode;
            IWorkerRouter router = _options.RouterFactory?.Invoke(endpoint)
                ?? WorkerRouters.Create(mode, _runtime, endpoint, _options.KvRouter with { BlockSize = card.KvBlockSize }, _logger);
            _endpoints[card.Endpoint] = new EndpointWorkers(client, router);
        }

        _cards[key] = new ModelInstance(instanceId, card, endpoint);
        Publish();
    }

    /// <summary>Rebuilds the snapshot from the card table (watch loop only) and wakes waiters.</summary>
    private void Publish()
    {
        ImmutableDictionary<string, ServedModel> before = Models;
        var builder = ImmutableDictionary.CreateBuilder<string, ServedModel>(StringComparer.Ordinal);
        foreach (IGrouping<string, ModelInstance> group in _cards.Values.GroupBy(i => i.Card.Name, StringComparer.Ordinal))
        {
            if (!_states.TryGetValue(group.Key, out ModelState? state))
            {
                ModelInstance first = group.OrderBy(i => i.InstanceId).First();
                state = new ModelState(group.Key, LoadTokenizerAsync, first.Card);
                _states[group.Key] = state;
                _ = state.GetPreprocessorAsync().ContinueWith(
                    t => Log.TokenizerFailed(_logger, group.Key, t.Exception!.GetBaseException()),
                    CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
                Log.ModelAdded(_logger, group.Key, first.Card.Endpoint, first.Card.ContextLength);
            }

            builder[group.Key] = new ServedModel(group.Key, state, [.. group.OrderBy(i => i.InstanceId)]);
        }

        ImmutableDictionary<string, ServedModel> after = builder.ToImmutable();
        foreach (string gone in before.Keys.Where(k => !after.ContainsKey(k)))
        {
            _states.Remove(gone);
            Log.ModelRemoved(_logger, gone);
        }

        Volatile.Write(ref _models, after);
        Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }

    private Task<TokenizerBundle> LoadTokenizerAsync(ModelDeploymentCard card, CancellationToken cancellationToken) =>
        ModelCardStore.LoadTokenizerAsync(card, _runtime.Blobs, _options.TokenizerCacheDirectory, cancellationToken);

    private static partial class Log
    {
        [LoggerMessage(EventId = 5101, Level = LogLevel.Information, Message = "Model {Model} is served (endpoint {Endpoint}, context {ContextLength})")]
        public static partial void ModelAdded(ILogger logger, string model, string endpoint, int contextLength);

        [LoggerMessage(EventId = 5102, Level = LogLevel.Information, Message = "Model {Model} is no longer served (its last worker left)")]
        public static partial void ModelRemoved(ILogger logger, string model);

        [LoggerMessage(EventId = 5103, Level = LogLevel.Warning, Message = "Ignoring model card {Key}: {Reason}")]
        public static partial void BadCard(ILogger logger, string key, string reason);

        [LoggerMessage(EventId = 5104, Level = LogLevel.Error, Message = "Loading the tokenizer of model {Model} failed (retried on the next request)")]
        public static partial void TokenizerFailed(ILogger logger, string model, Exception exception);

        [LoggerMessage(EventId = 5105, Level = LogLevel.Error, Message = "Watching model cards under {Prefix} failed; retrying")]
        public static partial void WatchFailed(ILogger logger, string prefix, Exception exception);
    }
}

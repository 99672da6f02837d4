using System.Collections.Concurrent;
using System.Text.Json;
using Dynamo.Llm.Disaggregation;
using Dynamo.Runtime.Discovery;
using Microsoft.Extensions.Logging;

namespace Dynamo.Components.Registry;

/// <summary>
/// The disaggregation settings of a namespace's models, as the discovery store holds them under
/// <c>v1/disagg/{namespace}/{model}</c>: followed by one watch, read on every request (a change applies to the
/// next request, no restart). Writes are persistent keys (they outlive the worker or command that wrote them).
/// </summary>
public sealed partial class DisaggregationSettingsStore : IAsyncDisposable
{
    private readonly IDiscovery _discovery;
    private readonly string _prefix;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, DisaggregationSettings> _byModel = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _watch = Task.CompletedTask;

    private DisaggregationSettingsStore(IDiscovery discovery, string ns, ILogger logger)
    {
        _discovery = discovery;
        _prefix = $"{DisaggregationSettings.KeyRoot}{ns}/";
        _logger = logger;
    }

    /// <summary>Starts following the settings of namespace <paramref name="ns"/>; returns once the existing ones are in.</summary>
    public static async Task<DisaggregationSettingsStore> StartAsync(IDiscovery discovery, string ns, ILogger logger, CancellationToken cancellationToken)
    {
        var store = new DisaggregationSettingsStore(discovery, ns, logger);
        store._watch = Task.Run(() => store.WatchAsync(store._stop.Token), CancellationToken.None);
        await store._synced.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        return store;
    }

    /// <summary>The settings in force for <paramref name="model"/> (the defaults where none were written).</summary>
    public DisaggregationSettings For(string model) => _byModel.GetValueOrDefault(model) ?? DisaggregationSettings.Default;

    /// <summary>Writes <paramref name="settings"/> for <paramref name="model"/> (validated first).</summary>
    public static Task PutAsync(IDiscovery discovery, string ns, string model, DisaggregationSettings settings, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(discovery);
        ArgumentNullException.ThrowIfNull(settings);
        return discovery.PutAsync(DisaggregationSettings.KeyFor(ns, model), settings.Validate().ToJsonUtf8(), DiscoveryPutOptions.Persistent, cancellationToken);
    }

    /// <summary>The settings written for <paramref name="model"/>, or null when none were (or they cannot be read).</summary>
    public static async Task<DisaggregationSettings?> GetAsync(IDiscovery discovery, string ns, string model, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(discovery);
        DiscoveryEntry? entry = await discovery.GetAsync(DisaggregationSettings.KeyFor(ns, model), cancellationToken).ConfigureAwait(false);
        return entry is null ? null : DisaggregationSettings.FromJson(entry.Value.Span);
    }

    /// <summary>Stops following.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _watch.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private Task WatchAsync(CancellationToken cancellationToken) =>
        DiscoveryWatch.RunAsync(_discovery, _prefix, Apply, e => Log.WatchFailed(_logger, _prefix, e), cancellationToken);

    private ValueTask Apply(DiscoveryEvent e, CancellationToken cancellationToken)
    {
        string model = e.Key.Length > _prefix.Length ? e.Key[_prefix.Length..] : "";
        switch (e.Kind)
        {
            case DiscoveryEventKind.Put:
                try
                {
                    DisaggregationSettings settings = DisaggregationSettings.FromJson(e.Value.Span);
                    _byModel[model] = settings;
                    Log.SettingsChanged(_logger, model, settings.ConditionalDisagg, settings.MaxLocalPrefillLength, settings.MaxPrefillQueueSize);
                }
                catch (Exception ex) when (ex is JsonException or ArgumentException)
                {
                    Log.BadSettings(_logger, e.Key, ex.Message);
                }

                break;
            case DiscoveryEventKind.Delete:
                _byModel.TryRemove(model, out _);
                break;
            case DiscoveryEventKind.Synced:
                _synced.TrySetResult();
                break;
        }

        return ValueTask.CompletedTask;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 5111, Level = LogLevel.Information, Message = "Disaggregation settings of {Model}: conditional {Conditional}, max local prefill length {MaxLocal}, max prefill queue size {MaxQueue}")]
        public static partial void SettingsChanged(ILogger logger, string model, bool conditional, int maxLocal, int maxQueue);

        [LoggerMessage(EventId = 5112, Level = LogLevel.Warning, Message = "Ignoring disaggregation settings {Key}: {Reason}")]
        public static partial void BadSettings(ILogger logger, string key, string reason);

        [LoggerMessage(EventId = 5113, Level = LogLevel.Error, Message = "Watching disaggregation settings under {Prefix} failed; retrying")]
        public static partial void WatchFailed(ILogger logger, string prefix, Exception exception);
    }
}

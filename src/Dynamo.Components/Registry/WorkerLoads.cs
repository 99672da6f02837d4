using System.Collections.Concurrent;
using System.Text.Json;
using Dynamo.Components.Workers;
using Dynamo.Llm.Protocols.Worker;
using Dynamo.Runtime;
using Dynamo.Runtime.EventPlane;

namespace Dynamo.Components.Registry;

/// <summary>
/// The last load report (<see cref="WorkerLoad"/>, every second on <c>dyn.{ns}.{comp}.events.load_metrics</c>) of
/// every worker of a namespace, whatever the router mode, by worker and data-parallel rank: what a frontend or
/// Processor exports per worker on its <c>/metrics</c>. The subscription's reader is the only writer; readers take
/// a snapshot. Reports of a worker stay until <see cref="Forget"/> (the caller drops the workers discovery no
/// longer lists).
/// </summary>
internal sealed class WorkerLoads : IAsyncDisposable
{
    private readonly IEventSubscription _subscription;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<(long WorkerId, int DpRank), Report> _reports = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reader;
    private long _malformed;

    private WorkerLoads(IEventSubscription subscription, TimeProvider time)
    {
        _subscription = subscription;
        _time = time;
        _reader = Task.Run(() => ReadAsync(_stop.Token), CancellationToken.None);
    }

    /// <summary>A report and when it arrived (<see cref="TimeProvider.GetTimestamp"/>).</summary>
    public readonly record struct Report(WorkerLoad Load, long ReceivedAt);

    /// <summary>Load-metrics messages that were not a valid report.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Subscribes to the load reports of every component of <paramref name="namespace"/>.</summary>
    public static async Task<WorkerLoads> StartAsync(DistributedRuntime runtime, string @namespace, TimeProvider? time = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        // EndpointAddress.EventSubject's subject with any component: dyn.{ns}.*.events.load_metrics.
        string subject = $"dyn.{@namespace}.*.events.{EngineWorker.LoadMetricsTopic}";
        IEventSubscription subscription = await runtime.Events.SubscribeAsync(subject, cancellationToken).ConfigureAwait(false);
        return new WorkerLoads(subscription, time ?? TimeProvider.System);
    }

    /// <summary>Every worker's and rank's last report, ordered by worker and rank.</summary>
    public IReadOnlyList<Report> Snapshot() => [.. _reports.OrderBy(p => p.Key.WorkerId).ThenBy(p => p.Key.DpRank).Select(p => p.Value)];

    /// <summary>Seconds since <paramref name="report"/> arrived.</summary>
    public double AgeSeconds(Report report) => _time.GetElapsedTime(report.ReceivedAt).TotalSeconds;

    /// <summary>Drops the reports of the workers not in <paramref name="keep"/>.</summary>
    public void Forget(IReadOnlySet<long> keep)
    {
        ArgumentNullException.ThrowIfNull(keep);
        foreach ((long WorkerId, int DpRank) key in _reports.Keys)
        {
            if (!keep.Contains(key.WorkerId))
            {
                _reports.TryRemove(key, out _);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _subscription.DisposeAsync().ConfigureAwait(false);
        try
        {
            await _reader.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task ReadAsync(CancellationToken cancellationToken)
    {
        await foreach (EventMessage message in _subscription.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            WorkerLoad? load;
            try
            {
                load = JsonSerializer.Deserialize(message.Payload.Span, WorkerJsonContext.Default.WorkerLoad);
            }
            catch (JsonException)
            {
                load = null;
            }

            if (load is null)
            {
                Interlocked.Increment(ref _malformed);
                continue;
            }

            _reports[(load.WorkerId, load.DpRank)] = new Report(load, _time.GetTimestamp());
        }
    }
}

using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Runtime;

/// <summary>
/// Calls one endpoint. It follows the endpoint's instances in discovery and, per request, sends to the
/// instance the caller names or else round-robin over the available ones. Failure handling (see README):
/// an instance whose request fails with no responders / unreachable is taken out of routing at once for
/// <see cref="EndpointClientOptions.DownInterval"/>; a request that failed that way before producing
/// anything is retried on another instance when the caller did not pin one; when an instance leaves
/// discovery, its in-flight streams end with an error at once instead of waiting for a timeout.
/// </summary>
public sealed class EndpointClient : IAsyncDisposable
{
    private readonly DistributedRuntime _runtime;
    private readonly EndpointClientOptions _options;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<long, InstanceRecord> _instances = new();
    private readonly ConcurrentDictionary<long, long> _downUntil = new();
    private readonly ConcurrentDictionary<long, CancellationTokenSource> _leftDiscovery = new();
    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _watch = Task.CompletedTask;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _next;

    internal EndpointClient(DistributedRuntime runtime, EndpointAddress address, EndpointClientOptions options)
    {
        _runtime = runtime;
        Address = address;
        _options = options;
    }

    /// <summary>The endpoint.</summary>
    public EndpointAddress Address { get; }

    /// <summary>Raised (on a background thread) after an instance joins or leaves.</summary>
    public event Action? InstancesChanged;

    /// <summary>Every instance discovery lists now, by id.</summary>
    public IReadOnlyList<InstanceRecord> Instances => _instances.Values.OrderBy(r => r.InstanceId).ToArray();

    /// <summary>Whether <paramref name="instanceId"/> is listed as draining (it takes no new request).</summary>
    public bool IsDraining(long instanceId) => _instances.TryGetValue(instanceId, out InstanceRecord? r) && r.Draining == true;

    /// <summary>The listed instances that are neither draining nor marked down.</summary>
    public IReadOnlyList<InstanceRecord> AvailableInstances
    {
        get
        {
            long now = Environment.TickCount64;
            return _instances.Values.Where(r => r.Draining != true && (!_downUntil.TryGetValue(r.InstanceId, out long until) || until <= now))
                .OrderBy(r => r.InstanceId).ToArray();
        }
    }

    /// <summary>Waits until at least <paramref name="count"/> instances are listed.</summary>
    public async Task WaitForInstancesAsync(int count = 1, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task changed = Volatile.Read(ref _changed).Task;
            if (_instances.Count >= count)
            {
                return;
            }

            await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Takes <paramref name="instanceId"/> out of routing for the down interval (a failure seen elsewhere).</summary>
    public void ReportFailure(long instanceId) =>
        _downUntil[instanceId] = Environment.TickCount64 + (long)_options.DownInterval.TotalMilliseconds;

    /// <summary>
    /// Sends <paramref name="payload"/> and streams the responses. <paramref name="instanceId"/> pins the
    /// instance (a router's choice); null lets the client choose and retry elsewhere.
    /// </summary>
    public async IAsyncEnumerable<ReadOnlyMemory<byte>> StreamAsync(ReadOnlyMemory<byte> payload, long? instanceId = null, RequestOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        RequestOptions request = options ?? _options.Request;
        if (request.RequestId.Length == 0)
        {
            request = request.WithNewId();
        }

        var tried = new HashSet<long>();
        while (true)
        {
            long target = instanceId ?? Pick(tried) ?? throw new RequestPlaneException(
                RequestErrorKind.NoResponders, "no_instances",
                tried.Count == 0 ? $"no instance of {Address} is available" : $"no instance of {Address} answered ({tried.Count} tried)");
            tried.Add(target);
            CancellationTokenSource left = _leftDiscovery.GetOrAdd(target, _ => new CancellationTokenSource());
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, left.Token);
            IAsyncEnumerator<ReadOnlyMemory<byte>> stream = _runtime.Requests
                .RequestStreamAsync(Address.InstanceSubject(target), payload, request, linked.Token)
                .GetAsyncEnumerator(linked.Token);
            bool produced = false;
            bool retry = false;
            try
            {
                while (true)
                {
                    bool more;
                    try
                    {
                        more = await stream.MoveNextAsync().ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (left.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                    {
                        ReportFailure(target);
                        throw new RequestPlaneException(RequestErrorKind.Unreachable, "instance_left",
                            $"instance {EndpointAddress.FormatId(target)} of {Address} left discovery (stopped or lease expired) during request {request.RequestId}");
                    }
                    catch (RequestPlaneException e) when (e.InstanceFailed)
                    {
                        ReportFailure(target);
                        if (produced || instanceId is not null)
                        {
                            throw;
                        }

                        retry = true;
                        break;
                    }

                    if (!more)
                    {
                        break;
                    }

                    produced = true;
                    yield return stream.Current;
                }
            }
            finally
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }

            if (!retry)
            {
                yield break;
            }

            request = request.WithNewId();
        }
    }

    /// <inheritdoc/>
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

    internal async Task StartAsync(CancellationToken cancellationToken)
    {
        _watch = Task.Run(() => WatchAsync(_stop.Token), CancellationToken.None);
        await _synced.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private long? Pick(HashSet<long> tried)
    {
        IReadOnlyList<InstanceRecord> available = AvailableInstances;
        InstanceRecord[] candidates = available.Where(r => !tried.Contains(r.InstanceId)).ToArray();
        if (candidates.Length == 0)
        {
            return null;
        }

        return candidates[(int)((uint)Interlocked.Increment(ref _next) % (uint)candidates.Length)].InstanceId;
    }

    private async Task WatchAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (DiscoveryEvent e in _runtime.Discovery.WatchPrefixAsync(Address.InstancesPrefix, cancellationToken).ConfigureAwait(false))
            {
                switch (e.Kind)
                {
                    case DiscoveryEventKind.Put:
                        InstanceRecord? record = TryParse(e.Value);
                        if (record is not null)
                        {
                            _instances[record.InstanceId] = record;
                            _downUntil.TryRemove(record.InstanceId, out _);
                            if (_leftDiscovery.TryGetValue(record.InstanceId, out CancellationTokenSource? old) && old.IsCancellationRequested)
                            {
                                _leftDiscovery.TryRemove(record.InstanceId, out _);
                            }
                        }

                        break;
                    case DiscoveryEventKind.Delete:
                        if (EndpointAddress.ParseIdFromKey(e.Key) is long id && _instances.TryRemove(id, out _))
                        {
                            if (_leftDiscovery.TryRemove(id, out CancellationTokenSource? left))
                            {
                                await left.CancelAsync().ConfigureAwait(false);
                            }
                        }

                        break;
                    case DiscoveryEventKind.Synced:
                        _synced.TrySetResult();
                        break;
                }

                Interlocked.Exchange(ref _changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                InstancesChanged?.Invoke();
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            _synced.TrySetException(e);
            throw;
        }
    }

    private static InstanceRecord? TryParse(ReadOnlyMemory<byte> json)
    {
        try
        {
            return JsonSerializer.Deserialize(json.Span, RuntimeJsonContext.Default.InstanceRecord);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

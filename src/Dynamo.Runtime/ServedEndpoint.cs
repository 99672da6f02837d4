namespace Dynamo.Runtime;

/// <summary>An endpoint this process serves; dispose to deregister and stop.</summary>
public sealed class ServedEndpoint : IAsyncDisposable
{
    private readonly DistributedRuntime _runtime;
    private readonly IAsyncDisposable _own;
    private readonly IAsyncDisposable _any;
    private readonly InstanceRecord _record;
    private int _disposed;
    private int _draining;
    private static readonly TimeSpan DrainPollInterval = TimeSpan.FromMilliseconds(20);

    internal ServedEndpoint(DistributedRuntime runtime, EndpointAddress address, string key, InstanceRecord record, IAsyncDisposable own, IAsyncDisposable any)
    {
        _runtime = runtime;
        Address = address;
        Key = key;
        _record = record;
        _own = own;
        _any = any;
    }

    /// <summary>The endpoint.</summary>
    public EndpointAddress Address { get; }

    /// <summary>The instance record's key in discovery.</summary>
    public string Key { get; }

    /// <summary>This instance's id.</summary>
    public long InstanceId => _runtime.InstanceId;

    /// <summary>Whether <see cref="DrainAsync"/> was called.</summary>
    public bool IsDraining => Volatile.Read(ref _draining) != 0;

    /// <summary>
    /// A graceful drain: the instance record is marked <c>draining</c> (clients choose this instance no more and
    /// keep the streams they have with it) and the shared any-instance subscription is dropped (requests to this
    /// instance's own subject are still served); then waits until <paramref name="inFlight"/> is 0, at most
    /// <paramref name="timeout"/>. Returns what is still in flight; dispose afterwards (it stops those).
    /// </summary>
    public async Task<long> DrainAsync(Func<long> inFlight, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(inFlight);
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        if (Interlocked.Exchange(ref _draining, 1) == 0)
        {
            try
            {
                byte[] json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(_record with { Draining = true }, RuntimeJsonContext.Default.InstanceRecord);
                await _runtime.Discovery.PutAsync(Key, json, Discovery.DiscoveryPutOptions.LeasedKey, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
            {
                // Discovery unreachable: clients still choose this instance until its lease goes; what it serves finishes anyway.
            }

            await _any.DisposeAsync().ConfigureAwait(false);
        }

        while (inFlight() > 0 && Environment.TickCount64 < deadline)
        {
            await Task.Delay(DrainPollInterval, cancellationToken).ConfigureAwait(false);
        }

        return inFlight();
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            // Leave discovery first so that no new request is routed here, then stop serving.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            await _runtime.Discovery.DeleteAsync(Key, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Best effort: whatever the store's failure, the key goes with the lease.
        }

        await _any.DisposeAsync().ConfigureAwait(false);
        await _own.DisposeAsync().ConfigureAwait(false);
    }
}

namespace Dynamo.Runtime;

/// <summary>An endpoint this process serves; dispose to deregister and stop.</summary>
public sealed class ServedEndpoint : IAsyncDisposable
{
    private readonly DistributedRuntime _runtime;
    private readonly IAsyncDisposable _own;
    private readonly IAsyncDisposable _any;
    private int _disposed;

    internal ServedEndpoint(DistributedRuntime runtime, EndpointAddress address, string key, IAsyncDisposable own, IAsyncDisposable any)
    {
        _runtime = runtime;
        Address = address;
        Key = key;
        _own = own;
        _any = any;
    }

    /// <summary>The endpoint.</summary>
    public EndpointAddress Address { get; }

    /// <summary>The instance record's key in discovery.</summary>
    public string Key { get; }

    /// <summary>This instance's id.</summary>
    public long InstanceId => _runtime.InstanceId;

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

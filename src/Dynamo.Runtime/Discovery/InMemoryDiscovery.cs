using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Dynamo.Runtime.Discovery;

/// <summary>
/// The in-process twin of etcd: one <see cref="InMemoryDiscoveryStore"/> shared by every component of a
/// process (single-machine mode), each component holding its own <see cref="InMemoryDiscovery"/> lease
/// on it. Same semantics as the etcd backend: leased keys vanish when the lease is revoked, watches
/// start with a listing and a Synced marker.
/// </summary>
public sealed class InMemoryDiscovery : IDiscovery
{
    private readonly InMemoryDiscoveryStore _store;
    private long _instanceId;
    private int _revoked;

    /// <summary>A lease holder on <paramref name="store"/>.</summary>
    public InMemoryDiscovery(InMemoryDiscoveryStore store)
    {
        ArgumentNullException.ThrowIfNull(store);
        _store = store;
    }

    /// <inheritdoc/>
    public string Name => "memory";

    /// <inheritdoc/>
    public string Address => "in-process";

    /// <inheritdoc/>
    public long InstanceId => _instanceId != 0 ? _instanceId : throw new InvalidOperationException("StartAsync has not been called");

    /// <inheritdoc/>
    public bool IsLeaseAlive => _instanceId != 0 && Volatile.Read(ref _revoked) == 0;

    /// <inheritdoc/>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_instanceId == 0)
        {
            _instanceId = _store.NewLease();
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task PutAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default)
    {
        _store.Put(key, value, LeaseFor(options), createOnly: false);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task<bool> CreateAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default) =>
        Task.FromResult(_store.Put(key, value, LeaseFor(options), createOnly: true));

    /// <inheritdoc/>
    public Task DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        _store.Delete(key);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task<DiscoveryEntry?> GetAsync(string key, CancellationToken cancellationToken = default) =>
        Task.FromResult(_store.Get(key));

    /// <inheritdoc/>
    public Task<IReadOnlyList<DiscoveryEntry>> GetPrefixAsync(string prefix, CancellationToken cancellationToken = default) =>
        Task.FromResult(_store.List(prefix));

    /// <inheritdoc/>
    public async IAsyncEnumerable<DiscoveryEvent> WatchPrefixAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Channel<DiscoveryEvent> events = Channel.CreateUnbounded<DiscoveryEvent>(new UnboundedChannelOptions { SingleReader = true });
        IDisposable watch = _store.Watch(prefix, events.Writer);
        try
        {
            while (await events.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (events.Reader.TryRead(out DiscoveryEvent? e))
                {
                    yield return e;
                }
            }
        }
        finally
        {
            watch.Dispose();
        }
    }

    /// <inheritdoc/>
    public Task RevokeAsync(CancellationToken cancellationToken = default)
    {
        if (_instanceId != 0 && Interlocked.Exchange(ref _revoked, 1) == 0)
        {
            _store.Revoke(_instanceId);
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync() => await RevokeAsync().ConfigureAwait(false);

    private long LeaseFor(DiscoveryPutOptions options)
    {
        if (!options.Leased)
        {
            return 0;
        }

        if (_instanceId == 0)
        {
            throw new InvalidOperationException("StartAsync has not been called");
        }

        if (Volatile.Read(ref _revoked) != 0)
        {
            throw new ObjectDisposedException(nameof(InMemoryDiscovery), "the lease was revoked");
        }

        return _instanceId;
    }
}

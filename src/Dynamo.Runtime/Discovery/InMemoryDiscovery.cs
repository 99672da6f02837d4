using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;

namespace Dynamo.Runtime.Discovery;

/// <summary>
/// The in-process twin of etcd: one <see cref="InMemoryDiscoveryStore"/> shared by every component of a
/// process (single-machine mode), each component holding its own <see cref="InMemoryDiscovery"/> lease
/// on it. Held to the etcd backend's contract (README.md, "Contract"): leased keys vanish when the lease is
/// revoked, watches start with a listing and a Synced marker, disposing ends the watches, and every call
/// before <see cref="StartAsync"/> or after <see cref="DisposeAsync"/> throws as etcd's does.
/// </summary>
public sealed class InMemoryDiscovery : IDiscovery
{
    private readonly InMemoryDiscoveryStore _store;
    private readonly ConcurrentDictionary<IDisposable, byte> _watches = new();
    private long _instanceId;
    private int _revoked;
    private int _disposed;

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
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_instanceId == 0)
        {
            _instanceId = _store.NewLease();
        }

        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task PutAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(options);
        EnsureUsable();
        _store.Put(key, value, LeaseFor(options), createOnly: false);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task<bool> CreateAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        ArgumentNullException.ThrowIfNull(options);
        EnsureUsable();
        return Task.FromResult(_store.Put(key, value, LeaseFor(options), createOnly: true));
    }

    /// <inheritdoc/>
    public Task DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        EnsureUsable();
        _store.Delete(key);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task<DiscoveryEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        EnsureUsable();
        return Task.FromResult(_store.Get(key));
    }

    /// <inheritdoc/>
    public Task<IReadOnlyList<DiscoveryEntry>> GetPrefixAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        EnsureUsable();
        return Task.FromResult(_store.List(prefix));
    }

    /// <inheritdoc/>
    /// <remarks>
    /// The events wait in an unbounded buffer: writers to the store never wait for a watcher, and a slow
    /// watcher loses nothing (etcd's watch slows its stream instead; neither drops). Cancelling the token ends
    /// the stream with <see cref="OperationCanceledException"/>; disposing this object ends it normally.
    /// </remarks>
    public async IAsyncEnumerable<DiscoveryEvent> WatchPrefixAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        EnsureUsable();
        Channel<DiscoveryEvent> events = Channel.CreateUnbounded<DiscoveryEvent>(new UnboundedChannelOptions { SingleReader = true });
        IDisposable watch = _store.Watch(prefix, events.Writer);
        _watches[watch] = 0;
        if (Volatile.Read(ref _disposed) != 0)
        {
            watch.Dispose(); // disposed meanwhile: end as if the watch had been running
        }

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
            _watches.TryRemove(watch, out _);
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

    /// <summary>Revokes the lease (see <see cref="RevokeAsync"/>) and ends every watch. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await RevokeAsync().ConfigureAwait(false);
        foreach (IDisposable watch in _watches.Keys)
        {
            watch.Dispose();
        }
    }

    private void EnsureUsable()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (_instanceId == 0)
        {
            throw new InvalidOperationException("StartAsync has not been called");
        }
    }

    private long LeaseFor(DiscoveryPutOptions options)
    {
        if (!options.Leased)
        {
            return 0;
        }

        if (Volatile.Read(ref _revoked) != 0)
        {
            throw new ObjectDisposedException(nameof(InMemoryDiscovery), "the lease was revoked");
        }

        return _instanceId;
    }
}

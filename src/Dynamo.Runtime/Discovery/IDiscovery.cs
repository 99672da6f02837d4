namespace Dynamo.Runtime.Discovery;

/// <summary>
/// A key/value store with leases and prefix watches: etcd between machines (<c>EtcdDiscovery</c>), a
/// dictionary in one process (<c>InMemoryDiscovery</c>). Every process holds one primary lease;
/// keys written with <see cref="DiscoveryPutOptions.Leased"/> live as long as it. The backend keeps the
/// lease alive in the background and, when it was lost (store unreachable longer than the TTL), grants a
/// new one as soon as the store is back and writes every leased key again: registration heals by itself.
/// Both backends keep the contract of the folder's README ("Contract").
/// </summary>
public interface IDiscovery : IAsyncDisposable
{
    /// <summary>"etcd" or "memory".</summary>
    string Name { get; }

    /// <summary>Where the store is, for messages ("http://10.0.0.1:2379", "in-process").</summary>
    string Address { get; }

    /// <summary>
    /// The id of the first primary lease, fixed for the life of this object (a re-granted lease keeps the
    /// same instance id; see the Discovery README). Valid after <see cref="StartAsync"/>.
    /// </summary>
    long InstanceId { get; }

    /// <summary>True while the primary lease is known to be alive.</summary>
    bool IsLeaseAlive { get; }

    /// <summary>
    /// Connects and grants the primary lease. Throws <see cref="DiscoveryUnavailableException"/> naming the
    /// address when the store cannot be reached within the connect timeout.
    /// </summary>
    Task StartAsync(CancellationToken cancellationToken = default);

    /// <summary>Writes <paramref name="key"/>. Leased keys are remembered and rewritten after a lease loss.</summary>
    Task PutAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default);

    /// <summary>Writes <paramref name="key"/> only if it does not exist; false when it did.</summary>
    Task<bool> CreateAsync(string key, ReadOnlyMemory<byte> value, DiscoveryPutOptions options, CancellationToken cancellationToken = default);

    /// <summary>Deletes <paramref name="key"/> (and forgets it if it was leased).</summary>
    Task DeleteAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>The value of <paramref name="key"/>, or null.</summary>
    Task<DiscoveryEntry?> GetAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>Every key starting with <paramref name="prefix"/>, in key order.</summary>
    Task<IReadOnlyList<DiscoveryEntry>> GetPrefixAsync(string prefix, CancellationToken cancellationToken = default);

    /// <summary>
    /// The keys under <paramref name="prefix"/> as a stream of events: first one <see cref="DiscoveryEventKind.Put"/>
    /// per existing key, then one <see cref="DiscoveryEventKind.Synced"/>, then every change as it happens.
    /// If the backend loses its watch (store restarted, history compacted), it lists the prefix again and
    /// yields the difference (puts and deletes) followed by another Synced, so a consumer that applies
    /// the events in order always converges to the store's content. Ends when cancelled.
    /// </summary>
    IAsyncEnumerable<DiscoveryEvent> WatchPrefixAsync(string prefix, CancellationToken cancellationToken = default);

    /// <summary>Revokes the primary lease now (every leased key disappears at once). Called by DisposeAsync.</summary>
    Task RevokeAsync(CancellationToken cancellationToken = default);
}

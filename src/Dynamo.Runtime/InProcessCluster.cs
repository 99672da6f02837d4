using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Runtime;

/// <summary>
/// Single-machine mode: the discovery store, request plane and event plane that every component of one
/// process shares (what etcd and NATS are between machines). Each component still gets its own
/// <see cref="DistributedRuntime"/> (its own lease and instance id) from <see cref="ConnectAsync"/>.
/// </summary>
public sealed class InProcessCluster : IAsyncDisposable
{
    /// <summary>The shared key/value store.</summary>
    public InMemoryDiscoveryStore Store { get; } = new();

    /// <summary>The shared request plane.</summary>
    public InProcessRequestPlane Requests { get; } = new();

    /// <summary>The shared event plane.</summary>
    public InProcessEventPlane Events { get; } = new();

    /// <summary>A runtime for one component on this cluster.</summary>
    public async Task<DistributedRuntime> ConnectAsync(CancellationToken cancellationToken = default)
    {
        var discovery = new InMemoryDiscovery(Store);
        await discovery.StartAsync(cancellationToken).ConfigureAwait(false);
        return new DistributedRuntime(discovery, Requests, Events, ownsPlanes: false, onDispose: null);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await Requests.DisposeAsync().ConfigureAwait(false);
        await Events.DisposeAsync().ConfigureAwait(false);
    }
}

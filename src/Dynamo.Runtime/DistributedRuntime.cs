using System.Text.Json;
using Dynamo.Runtime.Discovery;
using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using NATS.Client.Core;

namespace Dynamo.Runtime;

/// <summary>
/// One process's (or, in single-machine mode, one component's) view of the system: discovery, the
/// request plane and the event plane, and the operations built on them: serve an endpoint
/// (<see cref="ServeEndpointAsync(EndpointAddress, RequestHandler, CancellationToken)"/>), call one (<see cref="CreateClientAsync"/>), publish and read
/// model cards and events. Backends: etcd + NATS (<see cref="ConnectAsync"/>) or
/// <see cref="InProcessCluster"/>.
/// </summary>
public sealed class DistributedRuntime : IAsyncDisposable
{
    private readonly bool _ownsPlanes;
    private readonly Func<ValueTask>? _onDispose;
    private int _disposed;

    internal DistributedRuntime(IDiscovery discovery, IRequestPlane requests, IEventPlane events, bool ownsPlanes, Func<ValueTask>? onDispose)
    {
        Discovery = discovery;
        Requests = requests;
        Events = events;
        _ownsPlanes = ownsPlanes;
        _onDispose = onDispose;
        Blobs = new BlobStore(discovery);
    }

    /// <summary>
    /// Connects to etcd and NATS as <paramref name="options"/> say (one NATS connection shared by both
    /// planes) and grants this process's lease. Errors name the unreachable address and the variable:
    /// <see cref="DiscoveryUnavailableException"/>, <see cref="NatsUnavailableException"/>.
    /// </summary>
    public static async Task<DistributedRuntime> ConnectAsync(RuntimeOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.IsDistributed)
        {
            throw new ArgumentException("RuntimeOptions name no NATS server or etcd endpoint: use InProcessCluster for single-machine mode", nameof(options));
        }

        var discovery = new EtcdDiscovery(EtcdDiscoveryOptions.Default with
        {
            Endpoints = options.EtcdEndpoints!,
            LeaseTtl = options.LeaseTtl,
            ConnectTimeout = options.ConnectTimeout,
            Logger = options.LoggerFactory?.CreateLogger("Dynamo.Runtime.Discovery"),
            Security = options.Etcd,
        });
        NatsConnection? connection = null;
        try
        {
            await discovery.StartAsync(cancellationToken).ConfigureAwait(false);
            var natsOptions = NatsPlaneOptions.Default with
            {
                Url = options.NatsServer!,
                Security = options.Nats,
                ConnectTimeout = options.ConnectTimeout,
                Logger = options.LoggerFactory?.CreateLogger("Dynamo.Runtime.Nats"),
            };
            connection = await NatsConnectionFactory.ConnectAsync(natsOptions, cancellationToken).ConfigureAwait(false);
            NatsConnection owned = connection;
            return new DistributedRuntime(discovery, new NatsRequestPlane(owned, natsOptions), new NatsEventPlane(owned, natsOptions),
                ownsPlanes: true, onDispose: () => owned.DisposeAsync());
        }
        catch
        {
            await discovery.DisposeAsync().ConfigureAwait(false);
            if (connection is not null)
            {
                await connection.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    /// <summary>Discovery (etcd or in-memory).</summary>
    public IDiscovery Discovery { get; }

    /// <summary>The request plane (NATS or in-process).</summary>
    public IRequestPlane Requests { get; }

    /// <summary>The event plane (NATS or in-process).</summary>
    public IEventPlane Events { get; }

    /// <summary>Content-addressed blobs (tokenizers, chat templates) kept in discovery.</summary>
    public BlobStore Blobs { get; }

    /// <summary>This runtime's instance id (its first lease id).</summary>
    public long InstanceId => Discovery.InstanceId;

    /// <summary>"etcd+nats" or "in-process".</summary>
    public string Mode => Discovery.Name == "memory" ? "in-process" : $"{Discovery.Name}+{Requests.Name}";

    /// <summary>
    /// Serves <paramref name="address"/> with <paramref name="handler"/>: subscribes this instance's
    /// subject and the any-instance subject (queue group), then registers the instance record under the
    /// lease. Disposing the result deregisters first, then stops serving (in-flight requests are cancelled).
    /// </summary>
    public Task<ServedEndpoint> ServeEndpointAsync(EndpointAddress address, RequestHandler handler, CancellationToken cancellationToken = default) =>
        ServeEndpointAsync(address, handler, dataParallelRanks: null, cancellationToken);

    /// <summary>
    /// As <see cref="ServeEndpointAsync(EndpointAddress, RequestHandler, CancellationToken)"/>, for an instance that
    /// serves several data-parallel ranks behind its one subject: its record lists <paramref name="dataParallelRanks"/>
    /// (<see cref="InstanceRecord.DataParallelRanks"/>) so that routers address each; null for one.
    /// </summary>
    public async Task<ServedEndpoint> ServeEndpointAsync(EndpointAddress address, RequestHandler handler, IReadOnlyList<int>? dataParallelRanks, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        ArgumentNullException.ThrowIfNull(handler);
        string subject = address.InstanceSubject(InstanceId);
        IAsyncDisposable own = await Requests.ServeAsync(subject, handler, queueGroup: null, cancellationToken).ConfigureAwait(false);
        IAsyncDisposable any = await Requests.ServeAsync(address.AnyInstanceSubject, handler, queueGroup: address.AnyInstanceSubject, cancellationToken).ConfigureAwait(false);
        var record = new InstanceRecord
        {
            Namespace = address.Namespace,
            Component = address.Component,
            Endpoint = address.Endpoint,
            InstanceId = InstanceId,
            Transport = Requests.Name,
            Subject = subject,
            Host = Environment.MachineName,
            Pid = Environment.ProcessId,
            DataParallelRanks = dataParallelRanks is { Count: > 0 } ? [.. dataParallelRanks] : null,
            StartedMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        };
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(record, RuntimeJsonContext.Default.InstanceRecord);
        string key = address.InstanceKey(InstanceId);
        await Discovery.PutAsync(key, json, DiscoveryPutOptions.LeasedKey, cancellationToken).ConfigureAwait(false);
        return new ServedEndpoint(this, address, key, record, own, any);
    }

    /// <summary>
    /// A client of <paramref name="address"/>: it watches the endpoint's instances and sends requests to
    /// one of them. Returns once the initial listing is in (there may be no instance yet).
    /// </summary>
    public async Task<EndpointClient> CreateClientAsync(EndpointAddress address, EndpointClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        var client = new EndpointClient(this, address, options ?? EndpointClientOptions.Default);
        await client.StartAsync(cancellationToken).ConfigureAwait(false);
        return client;
    }

    /// <summary>Publishes an instance's model card (JSON) at <c>v1/mdc/{ns}/{comp}/{ep}/{id:hex}</c>, under the lease.</summary>
    public Task PublishModelCardAsync(EndpointAddress address, ReadOnlyMemory<byte> cardJson, CancellationToken cancellationToken = default) =>
        Discovery.PutAsync(address.ModelCardKey(InstanceId), cardJson, DiscoveryPutOptions.LeasedKey, cancellationToken);

    /// <summary>
    /// Deletes this instance's model card for <paramref name="address"/> (a draining worker: routers stop
    /// choosing it while its endpoint instance stays registered, so that its streams in flight go on).
    /// </summary>
    public Task WithdrawModelCardAsync(EndpointAddress address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        return Discovery.DeleteAsync(address.ModelCardKey(InstanceId), cancellationToken);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await Discovery.DisposeAsync().ConfigureAwait(false);
        if (_ownsPlanes)
        {
            await Requests.DisposeAsync().ConfigureAwait(false);
            await Events.DisposeAsync().ConfigureAwait(false);
        }

        if (_onDispose is not null)
        {
            await _onDispose().ConfigureAwait(false);
        }
    }
}

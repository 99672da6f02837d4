using Dynamo.Runtime.Discovery;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>
/// etcd discovery against a real etcd shared by a test class (each test uses keys of its own). A watch buffers
/// 16 events, so that a slow watcher makes it wait on etcd's stream.
/// </summary>
public sealed class EtcdDiscoveryTwin(EtcdServer server) : DiscoveryTwin
{
    public override string ExpectedName => "etcd";

    public override string ExpectedAddress => server.Endpoint;

    protected override IDiscovery Make() =>
        new EtcdDiscovery(EtcdDiscoveryOptions.Default with { Endpoints = [server.Endpoint], WatchBufferCapacity = 16 });
}

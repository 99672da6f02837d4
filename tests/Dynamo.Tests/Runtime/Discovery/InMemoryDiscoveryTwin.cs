using Dynamo.Runtime.Discovery;

namespace Dynamo.Tests.Runtime.Discovery;

/// <summary>In-memory discovery: every object leases on one store, as the components of one process do.</summary>
public sealed class InMemoryDiscoveryTwin : DiscoveryTwin
{
    private readonly InMemoryDiscoveryStore _store = new();

    public override string ExpectedName => "memory";

    public override string ExpectedAddress => "in-process";

    protected override IDiscovery Make() => new InMemoryDiscovery(_store);
}

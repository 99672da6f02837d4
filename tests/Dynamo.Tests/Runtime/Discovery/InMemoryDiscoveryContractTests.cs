namespace Dynamo.Tests.Runtime.Discovery;

public sealed class InMemoryDiscoveryContractTests() : DiscoveryContractTests(new InMemoryDiscoveryTwin());

using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Runtime.Discovery;

public sealed class EtcdDiscoveryContractTests(EtcdFixture etcd) : DiscoveryContractTests(new EtcdDiscoveryTwin(etcd.Server)), IClassFixture<EtcdFixture>;

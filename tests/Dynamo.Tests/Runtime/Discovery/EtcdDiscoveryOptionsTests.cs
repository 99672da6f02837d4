using Dynamo.Runtime.Discovery;

namespace Dynamo.Tests.Runtime.Discovery;

public class EtcdDiscoveryOptionsTests
{
    [Theory]
    [InlineData("127.0.0.1:2379", "http://127.0.0.1:2379")]
    [InlineData("localhost", "http://localhost:2379")]
    [InlineData("http://10.0.0.1:2379", "http://10.0.0.1:2379")]
    [InlineData("HTTP://etcd:23790/", "http://etcd:23790")]
    [InlineData("https://etcd.example.com:2379", "https://etcd.example.com:2379")]
    [InlineData("[::1]:2379", "http://[::1]:2379")]
    [InlineData("etcd_0.svc:2379", "http://etcd_0.svc:2379")]
    [InlineData(" etcd-0:2379 , etcd-1:2379,http://etcd-2:2379 ", "http://etcd-0:2379,http://etcd-1:2379,http://etcd-2:2379")]
    public void ParseEndpoints_ValidList_ReturnsNormalisedUrls(string value, string expected)
    {
        Assert.Equal(expected.Split(','), EtcdDiscoveryOptions.ParseEndpoints(value));
    }

    [Theory]
    [InlineData("", "empty item")]
    [InlineData("a:2379,,b:2379", "empty item")]
    [InlineData("a:2379,", "empty item")]
    [InlineData("etcd:http", "bad port \"http\" in \"etcd:http\"")]
    [InlineData("etcd:0", "bad port \"0\"")]
    [InlineData("etcd:65536", "bad port \"65536\"")]
    [InlineData("etcd:", "bad port \"\"")]
    [InlineData("http://etcd:-1", "bad port \"-1\"")]
    [InlineData("grpc://etcd:2379", "unknown scheme \"grpc\" in \"grpc://etcd:2379\"")]
    [InlineData("http://:2379", "bad host")]
    [InlineData("http://etcd:2379/v3", "bad port")]
    [InlineData("http://a:2379,https://b:2379", "mixes http and https")]
    [InlineData("<your-etcd-endpoints-address>", "\"<your-etcd-endpoints-address>\" is not a host name or IP address")]
    [InlineData("https://<host>:2379", "is not a host name or IP address")]
    [InlineData("user@etcd:2379", "is not a host name or IP address")]
    [InlineData("et cd:2379", "is not a host name or IP address")]
    public void ParseEndpoints_BadItem_ThrowsNamingEtcdEndpointsAndItem(string value, string expected)
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => EtcdDiscoveryOptions.ParseEndpoints(value));

        Assert.StartsWith("ETCD_ENDPOINTS: ", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Contains("; expected host:port, http://host:port or https://host:port, comma-separated", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Default_Values_AreTheDocumentedOnes()
    {
        EtcdDiscoveryOptions options = EtcdDiscoveryOptions.Default;

        Assert.Equal(["http://127.0.0.1:2379"], options.Endpoints);
        Assert.Equal(TimeSpan.FromSeconds(10), options.LeaseTtl);
        Assert.Equal(TimeSpan.FromSeconds(5), options.ConnectTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2), options.CallTimeout);
    }

    [Fact]
    public void Constructor_NoEndpoint_ThrowsNamingEtcdEndpoints()
    {
        ArgumentException e = Assert.Throws<ArgumentException>(() => new EtcdDiscovery(EtcdDiscoveryOptions.Default with { Endpoints = [] }));

        Assert.Contains("ETCD_ENDPOINTS", e.Message, StringComparison.Ordinal);
    }
}

using Dynamo.Runtime;

namespace Dynamo.Tests.Runtime;

public class RuntimeOptionsTests
{
    private static Func<string, string?> Env(string? nats, string? etcd) => name => name switch
    {
        "NATS_SERVER" => nats,
        "ETCD_ENDPOINTS" => etcd,
        _ => null,
    };

    [Fact]
    public void FromEnvironment_NeitherSetForRun_SingleMachineMode()
    {
        RuntimeOptions options = RuntimeOptions.FromEnvironment(defaultToLocalhost: false, Env(null, " "));
        Assert.False(options.IsDistributed);
        Assert.Null(options.NatsServer);
        Assert.Null(options.EtcdEndpoints);
    }

    [Fact]
    public void FromEnvironment_NeitherSetForWorker_LocalhostAsTheOriginal()
    {
        RuntimeOptions options = RuntimeOptions.FromEnvironment(defaultToLocalhost: true, Env(null, null));
        Assert.True(options.IsDistributed);
        Assert.Equal("nats://localhost:4222", options.NatsServer);
        Assert.Equal(["http://localhost:2379"], options.EtcdEndpoints);
        Assert.Equal(TimeSpan.FromSeconds(10), options.LeaseTtl);
    }

    [Fact]
    public void FromEnvironment_GuideSpellings_Normalised()
    {
        RuntimeOptions options = RuntimeOptions.FromEnvironment(defaultToLocalhost: false, Env("nats://10.0.0.1", "10.0.0.1:2379,http://10.0.0.2:2379"));
        Assert.Equal("nats://10.0.0.1:4222", options.NatsServer);
        Assert.Equal(["http://10.0.0.1:2379", "http://10.0.0.2:2379"], options.EtcdEndpoints);
    }

    [Theory]
    [InlineData("nats://h:4222", null, "ETCD_ENDPOINTS")]
    [InlineData(null, "h:2379", "NATS_SERVER")]
    public void FromEnvironment_OnlyOneSetForRun_ErrorNamingTheMissingOne(string? nats, string? etcd, string missing)
    {
        var e = Assert.Throws<ArgumentException>(() => RuntimeOptions.FromEnvironment(defaultToLocalhost: false, Env(nats, etcd)));
        Assert.Contains($"{missing} is not", e.Message);
    }

    [Theory]
    [InlineData("nats://:x", "h:2379", "NATS_SERVER")]
    [InlineData("nats://h:4222", "h:port", "ETCD_ENDPOINTS")]
    public void FromEnvironment_Malformed_ErrorNamingTheVariable(string nats, string etcd, string variable)
    {
        var e = Assert.Throws<ArgumentException>(() => RuntimeOptions.FromEnvironment(defaultToLocalhost: true, Env(nats, etcd)));
        Assert.Contains(variable, e.Message);
    }
}

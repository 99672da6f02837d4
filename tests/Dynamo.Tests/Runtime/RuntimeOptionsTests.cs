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
    [InlineData("<your-nats-server-address>", "h:2379", "NATS_SERVER item '<your-nats-server-address>' is not a NATS server address; expected nats://host:4222")]
    [InlineData("nats://h:4222", "<your-etcd-endpoints-address>", "ETCD_ENDPOINTS: \"<your-etcd-endpoints-address>\" is not a host name or IP address; expected host:port, http://host:port or https://host:port")]
    [InlineData("nats://h:4222", "http://<your-etcd-endpoints-address>:2379", "is not a host name or IP address; expected host:port")]
    [InlineData("nats://h:4222", "etcd host:2379", "is not a host name or IP address")]
    public void FromEnvironment_MalformedOrGuidePlaceholder_ErrorNamingTheVariableAndWhatWasExpected(string nats, string etcd, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => RuntimeOptions.FromEnvironment(defaultToLocalhost: true, Env(nats, etcd)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void FromEnvironment_NatsServerWithUserInfo_AddressWithoutItAndCredentialsInSecurity()
    {
        RuntimeOptions options = RuntimeOptions.FromEnvironment(defaultToLocalhost: true, Env("nats://dyn:pa55@10.0.0.1:4222", null));

        Assert.Equal("nats://10.0.0.1:4222", options.NatsServer);
        Assert.Equal("dyn", options.Nats.Username);
        Assert.Equal("pa55", options.Nats.Password);
        Assert.DoesNotContain("pa55", options.ToString());
    }

    [Fact]
    public void FromEnvironment_EtcdCaSet_BareEndpointsAndTheDefaultUseHttps()
    {
        using var pki = Infrastructure.TestCertificates.Create();
        Func<string, string?> env = name => name == "ETCD_AUTH_CA" ? pki.CaFile : name == "ETCD_ENDPOINTS" ? "10.0.0.1:2379,10.0.0.2" : null;

        Assert.Equal(["https://10.0.0.1:2379", "https://10.0.0.2:2379"], RuntimeOptions.FromEnvironment(defaultToLocalhost: true, env).EtcdEndpoints);
        Assert.Equal(["https://localhost:2379"], RuntimeOptions.FromEnvironment(defaultToLocalhost: true, name => name == "ETCD_AUTH_CA" ? pki.CaFile : null).EtcdEndpoints);
    }

    [Fact]
    public void FromEnvironment_EtcdCaWithHttpEndpoints_ErrorSayingUseHttps()
    {
        using var pki = Infrastructure.TestCertificates.Create();

        var e = Assert.Throws<ArgumentException>(() => RuntimeOptions.FromEnvironment(defaultToLocalhost: true, name => name == "ETCD_AUTH_CA" ? pki.CaFile : name == "ETCD_ENDPOINTS" ? "http://10.0.0.1:2379" : null));

        Assert.Contains("ETCD_ENDPOINTS names http:// endpoints; use https://host:2379", e.Message);
    }
}

using Dynamo.Runtime.Discovery;
using Dynamo.Tests.Infrastructure;
using static Dynamo.Tests.Runtime.FakeEnvironment;

namespace Dynamo.Tests.Runtime.Discovery;

public sealed class EtcdSecurityTests
{
    [Fact]
    public void FromEnvironment_Nothing_NoCredentialsNoTls()
    {
        EtcdSecurity security = EtcdSecurity.FromEnvironment(Env());

        Assert.False(security.HasCredentials);
        Assert.False(security.HasTls);
    }

    [Fact]
    public void FromEnvironment_CaAsFileOrAsPemText_SameCertificate()
    {
        using TestCertificates pki = TestCertificates.Create();

        EtcdSecurity fromFile = EtcdSecurity.FromEnvironment(Env(("ETCD_AUTH_CA", pki.CaFile)));
        EtcdSecurity fromText = EtcdSecurity.FromEnvironment(Env(("ETCD_AUTH_CA", File.ReadAllText(pki.CaFile))));

        Assert.Equal(fromFile.TrustedCertificates()[0].Thumbprint, fromText.TrustedCertificates()[0].Thumbprint);
        Assert.Equal($"ETCD_AUTH_CA {pki.CaFile}", fromFile.CaSource);
        Assert.Equal("ETCD_AUTH_CA", fromText.CaSource);
    }

    [Fact]
    public void FromEnvironment_ClientCertificateAndKey_LoadedWithItsPrivateKey()
    {
        using TestCertificates pki = TestCertificates.Create();

        EtcdSecurity security = EtcdSecurity.FromEnvironment(Env(("ETCD_AUTH_CLIENT_CERT", pki.ClientCertFile), ("ETCD_AUTH_CLIENT_KEY", pki.ClientKeyFile)));

        using System.Security.Cryptography.X509Certificates.X509Certificate2 certificate = security.ClientCertificate()!;
        Assert.True(certificate.HasPrivateKey);
    }

    [Theory]
    [InlineData("ETCD_AUTH_USERNAME", "root", null, null, "ETCD_AUTH_USERNAME is set but ETCD_AUTH_PASSWORD is not")]
    [InlineData("ETCD_AUTH_PASSWORD", "pw", null, null, "ETCD_AUTH_PASSWORD is set but ETCD_AUTH_USERNAME is not")]
    [InlineData("ETCD_AUTH_CA", "/no/such/ca.pem", null, null, "ETCD_AUTH_CA: /no/such/ca.pem does not exist")]
    [InlineData("ETCD_AUTH_CA", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", null, null, "ETCD_AUTH_CA")]
    [InlineData("ETCD_AUTH_CLIENT_KEY", "-----BEGIN PRIVATE KEY-----", null, null, "ETCD_AUTH_CLIENT_KEY is set but ETCD_AUTH_CLIENT_CERT is not: set both")]
    public void FromEnvironment_Inconsistent_ArgumentExceptionNamingTheVariable(string name1, string value1, string? name2, string? value2, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => EtcdSecurity.FromEnvironment(Env((name1, value1), (name2 ?? "", value2))));

        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void ToString_WithPassword_PasswordNotShown()
    {
        EtcdSecurity security = EtcdSecurity.FromEnvironment(Env(("ETCD_AUTH_USERNAME", "root"), ("ETCD_AUTH_PASSWORD", "pw-42")));

        string shown = security.ToString() + (EtcdDiscoveryOptions.Default with { Security = security });

        Assert.DoesNotContain("pw-42", shown);
        Assert.Contains("user: root, password ***", shown);
    }
}

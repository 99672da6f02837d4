using Dynamo.Runtime.Discovery;
using Dynamo.Tests.Infrastructure;
using static Dynamo.Tests.Runtime.FakeEnvironment;

namespace Dynamo.Tests.Runtime.Discovery;

public sealed class EtcdSecurityTests
{
    [Fact]
    public void FromEnvironment_CaAsFileOrAsPemText_SameCertificate()
    {
        using TestCertificates pki = TestCertificates.Create();

        EtcdSecurity fromFile = EtcdSecurity.FromEnvironment(Env(("ETCD_AUTH_CA", pki.CaFile)));
        EtcdSecurity fromText = EtcdSecurity.FromEnvironment(Env(("ETCD_AUTH_CA", File.ReadAllText(pki.CaFile))));

        Assert.Equal(fromFile.TrustedCertificates()[0].Thumbprint, fromText.TrustedCertificates()[0].Thumbprint);
        Assert.True(fromFile.HasTls);
        Assert.False(EtcdSecurity.FromEnvironment(Env()).HasTls);
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

    [Fact]
    public void FromEnvironment_OneVariableOfAPairOrABadCertificate_ArgumentExceptionNamingIt()
    {
        (string Name, string Value, string Expected)[] cases =
        [
            ("ETCD_AUTH_USERNAME", "root", "ETCD_AUTH_USERNAME is set but ETCD_AUTH_PASSWORD is not"),
            ("ETCD_AUTH_PASSWORD", "pw", "ETCD_AUTH_PASSWORD is set but ETCD_AUTH_USERNAME is not"),
            ("ETCD_AUTH_CA", "/no/such/ca.pem", "ETCD_AUTH_CA: /no/such/ca.pem does not exist"),
            ("ETCD_AUTH_CA", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "ETCD_AUTH_CA"),
            ("ETCD_AUTH_CLIENT_KEY", "-----BEGIN PRIVATE KEY-----", "ETCD_AUTH_CLIENT_KEY is set but ETCD_AUTH_CLIENT_CERT is not: set both"),
        ];

        foreach ((string name, string value, string expected) in cases)
        {
            Assert.Contains(expected, Assert.Throws<ArgumentException>(() => EtcdSecurity.FromEnvironment(Env((name, value)))).Message);
        }
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

using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;
using static Dynamo.Tests.Runtime.FakeEnvironment;
using NATS.Client.Core;
using NATS.NKeys;

namespace Dynamo.Tests.Runtime.RequestPlane;

public sealed class NatsSecurityTests
{
    [Fact]
    public void FromEnvironment_Nothing_NoCredentialsAndSystemTls()
    {
        NatsSecurity security = NatsSecurity.FromEnvironment(Env());

        Assert.False(security.HasCredentials);
        Assert.Equal(NatsAuthOpts.Default, security.ToAuthOpts());
        Assert.Equal(NatsTlsOpts.Default, security.ToTlsOpts());
    }

    [Fact]
    public void FromEnvironment_UserAndPassword_AuthOptsCarryThem()
    {
        NatsSecurity security = NatsSecurity.FromEnvironment(Env(("NATS_AUTH_USERNAME", "dyn"), ("NATS_AUTH_PASSWORD", " pass word ")));

        NatsAuthOpts auth = security.ToAuthOpts();
        Assert.Equal("dyn", auth.Username);
        Assert.Equal(" pass word ", auth.Password);
        Assert.Equal("NATS_AUTH_USERNAME/NATS_AUTH_PASSWORD", security.CredentialsHint);
    }

    [Fact]
    public void FromEnvironment_Token_AuthOptsCarryIt()
    {
        NatsSecurity security = NatsSecurity.FromEnvironment(Env(("NATS_AUTH_TOKEN", "t0k")));

        Assert.Equal("t0k", security.ToAuthOpts().Token);
        Assert.Equal("NATS_AUTH_TOKEN", security.CredentialsHint);
    }

    [Fact]
    public void FromEnvironment_NKeySeed_AuthOptsCarrySeedAndItsPublicKey()
    {
        using KeyPair pair = KeyPair.CreatePair(PrefixByte.User);

        NatsAuthOpts auth = NatsSecurity.FromEnvironment(Env(("NATS_AUTH_NKEY", pair.GetSeed()))).ToAuthOpts();

        Assert.Equal(pair.GetSeed(), auth.Seed);
        Assert.Equal(pair.GetPublicKey(), auth.NKey);
    }

    [Theory]
    [InlineData("user:secret", "user", "secret", null)]
    [InlineData("us%40er:p%3Ass", "us@er", "p:ss", null)]
    [InlineData("s3cr3t-token", null, null, "s3cr3t-token")]
    public void FromEnvironment_ServerUserInfo_UserPasswordOrToken(string userInfo, string? user, string? password, string? token)
    {
        NatsSecurity security = NatsSecurity.FromEnvironment(Env(), userInfo);

        Assert.Equal(user, security.Username);
        Assert.Equal(password, security.Password);
        Assert.Equal(token, security.Token);
        Assert.Equal("the user info in NATS_SERVER", security.CredentialsHint);
    }

    [Theory]
    [InlineData("NATS_AUTH_USERNAME", "dyn", null, null, "NATS_AUTH_USERNAME is set but NATS_AUTH_PASSWORD is not")]
    [InlineData("NATS_AUTH_PASSWORD", "pw", null, null, "NATS_AUTH_PASSWORD is set but NATS_AUTH_USERNAME is not")]
    [InlineData("NATS_AUTH_TOKEN", "t", "NATS_AUTH_NKEY", "SUAx", "given more than once (NATS_AUTH_TOKEN, NATS_AUTH_NKEY)")]
    [InlineData("NATS_AUTH_NKEY", "not-a-seed", null, null, "NATS_AUTH_NKEY is not an NKey seed")]
    [InlineData("NATS_AUTH_CREDENTIALS_FILE", "/x.creds", null, null, "NATS_AUTH_CREDENTIALS_FILE: JWT credentials files are not supported")]
    [InlineData("NATS_TLS_CA_CERT_PATH", "/no/such/ca.pem", null, null, "NATS_TLS_CA_CERT_PATH: /no/such/ca.pem does not exist")]
    public void FromEnvironment_Inconsistent_ArgumentExceptionNamingTheVariable(string name1, string value1, string? name2, string? value2, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => NatsSecurity.FromEnvironment(Env((name1, value1), (name2 ?? "", value2))));

        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public void FromEnvironment_UserInfoAndVariables_RefusedAsTwice()
    {
        var error = Assert.Throws<ArgumentException>(() => NatsSecurity.FromEnvironment(Env(("NATS_AUTH_TOKEN", "t")), "u:p"));

        Assert.Contains("NATS_AUTH_TOKEN, the user:password@ in NATS_SERVER", error.Message);
    }

    [Fact]
    public void FromEnvironment_ClientCertWithoutKey_Refused()
    {
        using TestCertificates pki = TestCertificates.Create();

        var error = Assert.Throws<ArgumentException>(() => NatsSecurity.FromEnvironment(Env(("NATS_TLS_CLIENT_CERT_PATH", pki.ClientCertFile))));

        Assert.Contains("NATS_TLS_CLIENT_CERT_PATH is set but NATS_TLS_CLIENT_KEY_PATH is not: set both", error.Message);
    }

    [Fact]
    public void FromEnvironment_CaAndClientCertificate_TlsRequiredWithThem()
    {
        using TestCertificates pki = TestCertificates.Create();

        NatsTlsOpts tls = NatsSecurity.FromEnvironment(Env(
            ("NATS_TLS_CA_CERT_PATH", pki.CaFile), ("NATS_TLS_CLIENT_CERT_PATH", pki.ClientCertFile), ("NATS_TLS_CLIENT_KEY_PATH", pki.ClientKeyFile))).ToTlsOpts();

        Assert.Equal(TlsMode.Require, tls.Mode);
        Assert.Equal(pki.CaFile, tls.CaFile);
        Assert.Equal(pki.ClientCertFile, tls.CertFile);
        Assert.Equal(pki.ClientKeyFile, tls.KeyFile);
    }

    [Fact]
    public void ToString_AnyCredentials_NoSecretShown()
    {
        using KeyPair pair = KeyPair.CreatePair(PrefixByte.User);
        NatsSecurity[] all =
        [
            NatsSecurity.FromEnvironment(Env(("NATS_AUTH_USERNAME", "dyn"), ("NATS_AUTH_PASSWORD", "pw-1"))),
            NatsSecurity.FromEnvironment(Env(("NATS_AUTH_TOKEN", "pw-1"))),
            NatsSecurity.FromEnvironment(Env(("NATS_AUTH_NKEY", pair.GetSeed()))),
        ];

        foreach (NatsSecurity security in all)
        {
            string shown = security.ToString() + (NatsPlaneOptions.Default with { Security = security });
            Assert.DoesNotContain("pw-1", shown);
            Assert.DoesNotContain(pair.GetSeed(), shown);
            Assert.Contains("***", shown);
        }
    }
}

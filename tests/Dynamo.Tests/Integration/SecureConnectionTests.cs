using System.Text;
using Dynamo.Cli;
using Dynamo.Cli.Commands;
using Dynamo.Runtime;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Runtime.RequestPlane;
using NATS.NKeys;

namespace Dynamo.Tests.Integration;

/// <summary>
/// Credentials and TLS through the environment, against a real nats-server and etcd that require them: the
/// options are read as the CLI reads them (<see cref="RuntimeOptions.FromEnvironment"/>) and connected as the CLI
/// connects (<see cref="RuntimeConnection.ConnectAsync(RuntimeOptions, CancellationToken)"/>, whose failures are the CLI's one-line errors); a request
/// then goes through NATS to an endpoint registered in etcd. Wrong settings fail naming the variable to fix, and
/// never show a secret.
/// </summary>
[Trait("Category", "Slow")]
public sealed class SecureConnectionTests
{
    private const string NatsPassword = "nats-Secret-1";
    private const string EtcdPassword = "etcd-Secret-2";

    [Fact]
    public async Task UserAndPassword_RightOnes_ServeAndCallThroughNatsAndEtcd()
    {
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig: $"authorization {{ user: dyn, password: \"{NatsPassword}\" }}");
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await etcd.EnableAuthAsync(EtcdPassword);

        RuntimeOptions options = Options(nats.Url, etcd.Endpoint, new()
        {
            ["NATS_AUTH_USERNAME"] = "dyn",
            ["NATS_AUTH_PASSWORD"] = NatsPassword,
            ["ETCD_AUTH_USERNAME"] = "root",
            ["ETCD_AUTH_PASSWORD"] = EtcdPassword,
        });

        await AssertServesAsync(options);
        Assert.DoesNotContain(NatsPassword, options.ToString());
        Assert.DoesNotContain(EtcdPassword, options.ToString());
    }

    [Fact]
    public async Task NatsServerUserInfo_RightOnes_ConnectsAndAddressShowsNoPassword()
    {
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig: $"authorization {{ user: dyn, password: \"{NatsPassword}\" }}");
        await using EtcdServer etcd = await EtcdServer.StartAsync();

        RuntimeOptions options = Options(nats.Url.Replace("nats://", $"nats://dyn:{NatsPassword}@", StringComparison.Ordinal), etcd.Endpoint, new());

        Assert.Equal(nats.Url, options.NatsServer);
        await AssertServesAsync(options);
    }

    [Theory]
    [InlineData("NATS_AUTH_PASSWORD", "wrong-one", "refused the credentials (NATS_AUTH_USERNAME/NATS_AUTH_PASSWORD)")]
    [InlineData(null, null, "requires credentials (none given; set NATS_AUTH_USERNAME and NATS_AUTH_PASSWORD")]
    public async Task NatsUserAndPassword_WrongOrMissing_OneLineNamingTheVariables(string? variable, string? value, string expected)
    {
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig: $"authorization {{ user: dyn, password: \"{NatsPassword}\" }}");
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        var env = new Dictionary<string, string?> { ["NATS_AUTH_USERNAME"] = "dyn", ["NATS_AUTH_PASSWORD"] = NatsPassword };
        if (variable is null)
        {
            env.Clear();
        }
        else
        {
            env[variable] = value;
        }

        string line = await FailureAsync(Options(nats.Url, etcd.Endpoint, env));

        Assert.Contains(expected, line);
        Assert.Contains("Authorization Violation", line, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(NatsPassword, line);
    }

    [Fact]
    public async Task NatsToken_RightAndWrong_ConnectsOrNamesNatsAuthToken()
    {
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig: "authorization { token: \"tok-3141\" }");
        await using EtcdServer etcd = await EtcdServer.StartAsync();

        await AssertServesAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_AUTH_TOKEN"] = "tok-3141" }));
        string line = await FailureAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_AUTH_TOKEN"] = "tok-2718" }));

        Assert.Contains("refused the credentials (NATS_AUTH_TOKEN)", line);
        Assert.DoesNotContain("tok-", line);
    }

    [Fact]
    public async Task NatsNKey_SeedOfAListedKey_Connects()
    {
        using KeyPair user = KeyPair.CreatePair(PrefixByte.User);
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig: $"authorization {{ users = [ {{ nkey: {user.GetPublicKey()} }} ] }}");
        await using EtcdServer etcd = await EtcdServer.StartAsync();

        await AssertServesAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_AUTH_NKEY"] = user.GetSeed() }));
        using KeyPair stranger = KeyPair.CreatePair(PrefixByte.User);
        string line = await FailureAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_AUTH_NKEY"] = stranger.GetSeed() }));

        Assert.Contains("refused the credentials (NATS_AUTH_NKEY)", line);
    }

    [Theory]
    [InlineData("root", "wrong-one", "refused the credentials of ETCD_AUTH_USERNAME/ETCD_AUTH_PASSWORD: wrong user name or password for user 'root'")]
    [InlineData(null, null, "requires authentication: set ETCD_AUTH_USERNAME and ETCD_AUTH_PASSWORD")]
    [InlineData("reader", "reader-pw", "permission denied to user 'reader' (ETCD_AUTH_USERNAME)")]
    public async Task EtcdAuth_WrongMissingOrWithoutPermission_OneLineNamingTheVariables(string? user, string? password, string expected)
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await etcd.EnableAuthAsync(EtcdPassword);
        await etcd.AddUserAsync("reader", "reader-pw");
        var env = new Dictionary<string, string?> { ["ETCD_AUTH_USERNAME"] = user, ["ETCD_AUTH_PASSWORD"] = password };

        // A user without a role passes the start (etcd grants leases to anyone) and is refused at its first write.
        string line = user == "reader"
            ? await FirstWriteFailureAsync(Options(nats.Url, etcd.Endpoint, env))
            : await FailureAsync(Options(nats.Url, etcd.Endpoint, env));

        Assert.Contains($"etcd at {etcd.Endpoint}", line);
        Assert.Contains(expected, line);
        Assert.DoesNotContain(EtcdPassword, line);
    }

    [Fact]
    public async Task EtcdCredentials_AuthenticationOff_NotUsedAndServes()
    {
        await using NatsServer nats = await NatsServer.StartAsync();
        await using EtcdServer etcd = await EtcdServer.StartAsync();

        await AssertServesAsync(Options(nats.Url, etcd.Endpoint, new() { ["ETCD_AUTH_USERNAME"] = "root", ["ETCD_AUTH_PASSWORD"] = EtcdPassword }));
    }

    [Fact]
    public async Task Tls_CaFilesOfBothServers_ServeAndCall_WithoutThemTheCaVariableIsNamed()
    {
        using TestCertificates pki = TestCertificates.Create();
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig: $"tls {{ cert_file: \"{pki.ServerCertFile}\", key_file: \"{pki.ServerKeyFile}\" }}");
        await using EtcdServer etcd = await EtcdServer.StartAsync(tls: new EtcdServer.Tls(pki.ServerCertFile, pki.ServerKeyFile, pki.CaFile));
        Assert.StartsWith("https://", etcd.Endpoint);

        await AssertServesAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_TLS_CA_CERT_PATH"] = pki.CaFile, ["ETCD_AUTH_CA"] = pki.CaFile }));

        string nats1 = await FailureAsync(Options(nats.Url, etcd.Endpoint, new() { ["ETCD_AUTH_CA"] = pki.CaFile }));
        Assert.Contains("TLS handshake failed", nats1);
        Assert.Contains("NATS_TLS_CA_CERT_PATH", nats1);
        string nats2 = await FailureAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_TLS_CA_CERT_PATH"] = pki.OtherCaFile, ["ETCD_AUTH_CA"] = pki.CaFile }));
        Assert.Contains("TLS handshake failed (NATS_TLS_CA_CERT_PATH)", nats2);

        string etcd1 = await FailureAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_TLS_CA_CERT_PATH"] = pki.CaFile }));
        Assert.Contains($"etcd at {etcd.Endpoint}: the TLS handshake failed", etcd1);
        Assert.Contains("ETCD_AUTH_CA", etcd1);
        string etcd2 = await FailureAsync(Options(nats.Url, etcd.Endpoint, new() { ["NATS_TLS_CA_CERT_PATH"] = pki.CaFile, ["ETCD_AUTH_CA"] = pki.OtherCaFile }));
        Assert.Contains($"the TLS handshake failed (ETCD_AUTH_CA {pki.OtherCaFile})", etcd2);
    }

    [Fact]
    public async Task MutualTls_ClientCertificatesGiven_ServeAndCall_WithoutThemRefused()
    {
        using TestCertificates pki = TestCertificates.Create();
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig:
            $"tls {{ cert_file: \"{pki.ServerCertFile}\", key_file: \"{pki.ServerKeyFile}\", ca_file: \"{pki.CaFile}\", verify: true }}");
        await using EtcdServer etcd = await EtcdServer.StartAsync(tls: new EtcdServer.Tls(
            pki.ServerCertFile, pki.ServerKeyFile, pki.CaFile, ClientCaFile: pki.CaFile, ClientCertFile: pki.ClientCertFile, ClientKeyFile: pki.ClientKeyFile));
        var env = new Dictionary<string, string?>
        {
            ["NATS_TLS_CA_CERT_PATH"] = pki.CaFile,
            ["NATS_TLS_CLIENT_CERT_PATH"] = pki.ClientCertFile,
            ["NATS_TLS_CLIENT_KEY_PATH"] = pki.ClientKeyFile,
            ["ETCD_AUTH_CA"] = pki.CaFile,
            ["ETCD_AUTH_CLIENT_CERT"] = pki.ClientCertFile,
            ["ETCD_AUTH_CLIENT_KEY"] = pki.ClientKeyFile,
        };

        await AssertServesAsync(Options(nats.Url, etcd.Endpoint, env));

        string etcdLine = await FailureAsync(Options(nats.Url, etcd.Endpoint, new(env) { ["ETCD_AUTH_CLIENT_CERT"] = null, ["ETCD_AUTH_CLIENT_KEY"] = null }));
        Assert.Contains($"etcd at {etcd.Endpoint}", etcdLine);
        string natsLine = await FailureAsync(Options(nats.Url, etcd.Endpoint, new(env) { ["NATS_TLS_CLIENT_CERT_PATH"] = null, ["NATS_TLS_CLIENT_KEY_PATH"] = null }));
        Assert.Contains($"NATS at {nats.Url}", natsLine);
    }

    /// <summary>The options as the CLI reads them (its defaults to localhost), from <paramref name="env"/> only.</summary>
    private static RuntimeOptions Options(string natsServer, string etcdEndpoints, Dictionary<string, string?> env)
    {
        var all = new Dictionary<string, string?>(env) { ["NATS_SERVER"] = natsServer, ["ETCD_ENDPOINTS"] = etcdEndpoints };
        return RuntimeOptions.FromEnvironment(defaultToLocalhost: true, name => all.GetValueOrDefault(name)) with { LeaseTtl = TimeSpan.FromSeconds(3) };
    }

    /// <summary>Connects as the CLI does, serves an endpoint and calls it through NATS, the instance found in etcd.</summary>
    private static async Task AssertServesAsync(RuntimeOptions options)
    {
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(options);
        var address = new EndpointAddress("sec" + Guid.NewGuid().ToString("N")[..8], "backend", "generate");
        await using ServedEndpoint served = await runtime.ServeEndpointAsync(address, (_, payload, _) => TestHandlers.One("echo:" + Encoding.UTF8.GetString(payload.Span)));
        await using EndpointClient client = await runtime.CreateClientAsync(address);
        await client.WaitForInstancesAsync(1).WaitAsync(TimeSpan.FromSeconds(30));
        var answers = new List<string>();
        await foreach (ReadOnlyMemory<byte> answer in client.StreamAsync(Encoding.UTF8.GetBytes("hi")))
        {
            answers.Add(Encoding.UTF8.GetString(answer.Span));
        }

        Assert.Equal(["echo:hi"], answers);
    }

    /// <summary>The CLI's one line for a connection that fails.</summary>
    private static async Task<string> FailureAsync(RuntimeOptions options)
    {
        var error = await Assert.ThrowsAsync<CliUsageException>(async () => await (await RuntimeConnection.ConnectAsync(options)).DisposeAsync());
        string line = CliErrors.Describe(error);
        Assert.DoesNotContain('\n', line);
        return line;
    }

    /// <summary>The message of the first registration's failure, after a start that etcd let through.</summary>
    private static async Task<string> FirstWriteFailureAsync(RuntimeOptions options)
    {
        await using DistributedRuntime runtime = await RuntimeConnection.ConnectAsync(options);
        var error = await Assert.ThrowsAsync<Dynamo.Runtime.Discovery.DiscoveryUnavailableException>(() =>
            runtime.ServeEndpointAsync(new EndpointAddress("sec", "backend", "generate"), (_, _, _) => TestHandlers.One("x")));
        Assert.DoesNotContain('\n', error.Message);
        return error.Message;
    }
}

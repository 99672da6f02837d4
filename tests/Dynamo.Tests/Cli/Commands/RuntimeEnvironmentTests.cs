using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>
/// The CLI's runtime environment (NATS_SERVER, ETCD_ENDPOINTS and their credentials) as a user sets it, on the real
/// `dynamo` process: a malformed value, or the guides' placeholder as written, is one line on stderr naming the
/// variable and what was expected, and a non-zero exit code (no stack trace); a worker given the right
/// credentials serves servers that require them, one given a wrong password says which variable to fix.
/// </summary>
[Trait("Category", "Slow")]
public sealed class RuntimeEnvironmentTests
{
    [Theory]
    [InlineData("worker", "ETCD_ENDPOINTS", "<your-etcd-endpoints-address>", "expected host:port, http://host:port or https://host:port")]
    [InlineData("worker", "NATS_SERVER", "<your-nats-server-address>", "expected nats://host:4222")]
    [InlineData("worker", "ETCD_ENDPOINTS", "http://etcd:port", "bad port")]
    [InlineData("worker", "NATS_SERVER", "http://nats:4222", "expected nats://host:4222")]
    [InlineData("frontend", "ETCD_ENDPOINTS", "<your-etcd-endpoints-address>", "expected host:port, http://host:port or https://host:port")]
    [InlineData("frontend", "NATS_SERVER", "<your-nats-server-address>", "expected nats://host:4222")]
    public void Command_MalformedAddressVariable_OneLineNamingItAndExitCode1(string command, string variable, string value, string expected)
    {
        string[] args = command == "worker" ? ["worker", "--engine", "echo"] : ["frontend", "--http-port", "0"];

        CliProcess.Result result = CliProcess.Run(args, TimeSpan.FromSeconds(120), new Dictionary<string, string> { [variable] = value });

        Assert.Equal(1, result.ExitCode);
        string line = Assert.Single(result.StderrLines);
        Assert.StartsWith($"error: {variable}", line);
        Assert.Contains(expected, line);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public async Task Worker_CredentialsOfBothServers_ServesACallAndAWrongPasswordIsNamed()
    {
        await using NatsServer nats = await NatsServer.StartAsync(extraConfig: "authorization { token: \"nats-tok-77\" }");
        await using EtcdServer etcd = await EtcdServer.StartAsync();
        await etcd.EnableAuthAsync("etcd-pw-88");
        var env = new Dictionary<string, string>
        {
            ["NATS_SERVER"] = nats.Url,
            ["ETCD_ENDPOINTS"] = etcd.Endpoint,
            ["NATS_AUTH_TOKEN"] = "nats-tok-77",
            ["ETCD_AUTH_USERNAME"] = "root",
            ["ETCD_AUTH_PASSWORD"] = "etcd-pw-88",
        };

        await using (DynamoProcess worker = DynamoProcess.Start(["worker", "--engine", "echo", "--model", TestModels.Tiny.Value, "--served-model-name", "tiny", "--lease-ttl", "3"], env))
        {
            await worker.WaitForLineAsync("serving dynamo.backend.generate");
            await using DynamoProcess call = DynamoProcess.Start(["call", "dynamo.backend.generate", "--prompt", "Hello", "--max-tokens", "4", "--wait", "30"], env);
            int code = await call.WaitForExitAsync(120);
            Assert.True(code == 0, call.Output);
            Assert.NotEmpty(call.Stdout.Trim());
            Assert.DoesNotContain("nats-tok-77", worker.Output + call.Output);
            Assert.DoesNotContain("etcd-pw-88", worker.Output + call.Output);
        }

        CliProcess.Result wrong = CliProcess.Run(["worker", "--engine", "echo", "--model", TestModels.Tiny.Value], TimeSpan.FromSeconds(120), new Dictionary<string, string>(env) { ["ETCD_AUTH_PASSWORD"] = "guess" });

        Assert.Equal(1, wrong.ExitCode);
        string line = Assert.Single(wrong.StderrLines, l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Contains("refused the credentials of ETCD_AUTH_USERNAME/ETCD_AUTH_PASSWORD", line);
        Assert.DoesNotContain("guess", wrong.Stderr + wrong.Stdout);
        Assert.DoesNotContain("   at ", wrong.Stderr);
    }
}

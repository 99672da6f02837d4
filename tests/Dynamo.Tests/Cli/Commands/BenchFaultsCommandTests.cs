using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary>
/// <c>dynamo bench faults</c>, the fault-injection harness, at its CI size: real nats-server, etcd, frontend and
/// mocker worker processes under streaming load; every fault (kill -9, SIGSTOP, NATS and etcd restarts, rolling
/// restart, a worker's network link cut for 4 s) loses no request. Also its one-line errors.
/// </summary>
public sealed class BenchFaultsCommandTests
{
    [Fact]
    [Trait("Category", "Slow")]
    public void BenchFaults_QuickJson_EveryFaultLosesNoRequest()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "faults", "--quick", "--json"], TimeSpan.FromMinutes(8));

        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement[] rows = [.. doc.RootElement.EnumerateArray()];
        Assert.Equal(["kill", "stop", "nats", "etcd", "rolling", "partition"], rows.Select(f => f.GetProperty("fault").GetString()));
        foreach (JsonElement row in rows)
        {
            string name = row.GetProperty("fault").GetString()!;
            Assert.True(row.GetProperty("requests").GetInt32() > 0, name);
            Assert.Equal(row.GetProperty("requests").GetInt32(), row.GetProperty("completed").GetInt32());
            Assert.Equal(0, row.GetProperty("failed").GetInt32());
            Assert.Equal(0, row.GetProperty("refused").GetInt32());
            Assert.Equal(JsonValueKind.Number, row.GetProperty("recovery_seconds").ValueKind);
        }

        // A killed worker had streams in flight (4 clients over 2 workers): they moved.
        Assert.True(rows[0].GetProperty("migrated").GetInt32() >= 1, r.Stdout);
        Assert.Contains("exit codes 0,0", rows[4].GetProperty("description").GetString());

        // The partitioned worker's streams moved; once its link was back it rejoined discovery and took requests again.
        Assert.True(rows[5].GetProperty("migrated").GetInt32() >= 1, r.Stdout);
        Assert.Contains("s and serving", rows[5].GetProperty("description").GetString());
        Assert.Contains("none lost", r.Stderr);
    }

    [Theory]
    [InlineData("--faults", "kill,reboot", "--faults: 'kill,reboot' must be a comma-separated list of kill, stop, nats, etcd, rolling, partition")]
    [InlineData("--workers", "1", "--workers: 1 is outside 2..64")]
    [InlineData("--stop-seconds", "0", "--stop-seconds: 0 is outside (0, 600]")]
    [InlineData("--partition-seconds", "0", "--partition-seconds: 0 is outside (0, 600]")]
    public void BenchFaults_BadFlag_OneLineErrorNamingIt(string flag, string value, string message)
    {
        CliProcess.Result r = CliProcess.Run(["bench", "faults", flag, value], TimeSpan.FromMinutes(2));

        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
    }
}

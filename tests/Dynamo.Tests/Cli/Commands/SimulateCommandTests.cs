using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

public class SimulateCommandTests
{
    [Theory]
    [InlineData("--workers", "0", "--workers")]
    [InlineData("--router-modes", "kv,best", "--router-modes")]
    [InlineData("--profile", "tpu", "--profile")]
    [InlineData("--step-ms", "-1", "--step-ms")]
    [InlineData("--kv-event-delay-ms", "-5", "--kv-event-delay-ms")]
    [InlineData("--kv-event-loss", "1.5", "--kv-event-loss")]
    [InlineData("--router-resync-accuracy", "2", "--router-resync-accuracy")]
    [InlineData("--router-accuracy-window", "0", "--router-accuracy-window")]
    public void Simulate_BadFlag_OneLineErrorNamingIt(string flag, string value, string named)
    {
        CliProcess.Result r = CliProcess.Run(["simulate", flag, value, "-n", "10"]);

        Assert.NotEqual(0, r.ExitCode);
        string line = Assert.Single(r.StderrLines);
        Assert.Contains(named, line);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void Simulate_Json_OneObjectPerModeWithTheFigures()
    {
        CliProcess.Result r = CliProcess.Run(["simulate", "--workers", "4", "--router-modes", "kv,round-robin", "-n", "40", "--json"]);

        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement[] modes = [.. doc.RootElement.GetProperty("modes").EnumerateArray()];
        Assert.Equal(["kv", "round-robin"], modes.Select(m => m.GetProperty("mode").GetString()));
        Assert.All(modes, m =>
        {
            Assert.Equal(40, m.GetProperty("completed").GetInt32());
            Assert.True(m.GetProperty("ttft_p99_ms").GetDouble() > 0);
            Assert.True(m.GetProperty("decision_p99_us").GetDouble() > 0);
            Assert.Equal(0, m.GetProperty("starved_workers").GetInt32());
        });
    }

    [Fact]
    public void BenchRouting_VirtualTime_PrintsTheSimulationTables()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "routing", "--virtual-time", "--workers", "2", "--modes", "kv", "-n", "20"]);

        Assert.Equal(0, r.ExitCode);
        Assert.Contains("2 simulated workers", r.Stdout);
        Assert.Contains("simulate: wall time", r.Stdout);
    }
}

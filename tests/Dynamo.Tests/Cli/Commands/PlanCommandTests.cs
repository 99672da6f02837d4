using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

public class PlanCommandTests
{
    [Theory]
    [InlineData("--ttft-p99", "0", "--ttft-p99")]
    [InlineData("--max-workers", "0", "--max-workers")]
    [InlineData("--ratios", "1:0", "--ratios")]
    [InlineData("--shapes", "mixed", "--shapes")]
    [InlineData("--trace", "/no/such/trace.jsonl", "--trace")]
    [InlineData("--router-modes", "best", "--router-modes")]
    [InlineData("--whole-trace", "true", "--whole-trace")]
    public void Plan_BadFlag_OneLineErrorNamingIt(string flag, string value, string named)
    {
        string[] args = flag == "--ttft-p99" ? ["plan", "--itl-p99", "50", flag, value] : ["plan", "--ttft-p99", "1000", "--itl-p99", "50", flag, value];
        CliProcess.Result r = CliProcess.Run(args);

        Assert.NotEqual(0, r.ExitCode);
        string line = Assert.Single(r.StderrLines);
        Assert.Contains(named, line);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void Plan_Json_AnswerMeetsTheTargetsAndListsTheCandidates()
    {
        CliProcess.Result r = CliProcess.Run(["plan", "--ttft-p99", "60000", "--itl-p99", "1000", "--max-workers", "2", "--shapes", "agg", "--router-modes", "kv", "-n", "20", "--json"]);

        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement answer = doc.RootElement.GetProperty("answer");
        Assert.True(doc.RootElement.GetProperty("met").GetBoolean());
        Assert.Equal(1, answer.GetProperty("workers").GetInt32());
        Assert.True(answer.GetProperty("ttft_p99_ms").GetDouble() <= 60000);
        Assert.True(doc.RootElement.GetProperty("candidates").GetArrayLength() >= 1);
    }

    [Theory]
    [InlineData(new[] { "--decode-workers", "2" }, "--decode-workers")]
    [InlineData(new[] { "--prefill-workers", "1", "--decode-workers", "2", "--workers", "3" }, "--decode-workers")]
    [InlineData(new[] { "--prefill-workers", "-1" }, "--prefill-workers")]
    [InlineData(new[] { "--prefill-workers", "1", "--kv-transfer-gbps", "0" }, "--kv-transfer-gbps")]
    public void Simulate_BadDisaggregationFlag_OneLineErrorNamingIt(string[] flags, string named)
    {
        CliProcess.Result r = CliProcess.Run(["simulate", "-n", "10", .. flags]);

        Assert.NotEqual(0, r.ExitCode);
        string line = Assert.Single(r.StderrLines);
        Assert.Contains(named, line);
    }
}

using System.Text.Json;
using Dynamo.Load;
using Dynamo.Load.Client;
using Dynamo.Load.Reports;

namespace Dynamo.Tests.Load.Reports;

public class BenchServeStatisticsTests
{
    [Theory]
    [InlineData(0, 1.0)]
    [InlineData(50, 3.0)]
    [InlineData(25, 2.0)]
    [InlineData(90, 4.6)]
    [InlineData(99, 4.96)]
    [InlineData(100, 5.0)]
    public void Percentile_FiveValues_LinearInterpolationBetweenClosestRanks(double percent, double expected)
    {
        Assert.Equal(expected, LatencySummary.Percentile([1.0, 2.0, 3.0, 4.0, 5.0], percent), 9);
    }

    [Fact]
    public void Percentile_OneValue_IsThatValue()
    {
        Assert.Equal(7.5, LatencySummary.Percentile([7.5], 99));
    }

    [Fact]
    public void Percentile_Empty_Throws()
    {
        Assert.Throws<ArgumentException>(() => LatencySummary.Percentile([], 50));
    }

    [Fact]
    public void Of_UnsortedValues_MeanAndPercentilesOfTheSorted()
    {
        LatencySummary s = LatencySummary.Of(Enumerable.Range(1, 100).Select(i => (double)((i * 37) % 100 + 1)));

        Assert.Equal(100, s.Count);
        Assert.Equal(50.5, s.Mean, 9);
        Assert.Equal(50.5, s.P50, 9);
        Assert.Equal(90.1, s.P90, 9);
        Assert.Equal(99.01, s.P99, 9);
    }

    [Fact]
    public void Of_Empty_AllZeroWithCountZero()
    {
        Assert.Equal(default, LatencySummary.Of([]));
    }

    private static LoadReport SampleReport()
    {
        RequestResult[] results =
        [
            new() { Outcome = RequestOutcome.Ok, Start = 0, Ttft = 0.1, EndToEnd = 1.0, OutputTokens = 10, PromptTokens = 50, TokenGaps = [0.1, 0.1] },
            new() { Outcome = RequestOutcome.Ok, Start = 0.5, Ttft = 0.3, EndToEnd = 1.5, OutputTokens = 10, PromptTokens = 50, TokenGaps = [0.2, 0.2] },
            new() { Outcome = RequestOutcome.Rejected, Start = 0.6, EndToEnd = 0.01, Error = "HTTP 429: busy", StatusCode = 429 },
            new() { Outcome = RequestOutcome.Error, Start = 0.7, EndToEnd = 0.02, Error = "HTTP 500: boom", StatusCode = 500 },
            new() { Outcome = RequestOutcome.Error, Start = 0.8, EndToEnd = 0.02, Error = "HTTP 500: boom", StatusCode = 500 },
        ];
        return LoadReport.From(LoadOptions.Default with { Url = "http://h:1", Model = "m", Concurrency = 2, NumPrompts = 5, InputLen = 50 }, "random", results, 2.0);
    }

    [Fact]
    public void From_MixedResults_ThroughputOverWallTimeAndLatenciesOverSuccesses()
    {
        LoadReport r = SampleReport();

        Assert.Equal((5, 2, 1, 2), (r.Requests, r.Completed, r.Rejected, r.Errors));
        Assert.Equal(["HTTP 429: busy", "HTTP 500: boom"], r.ErrorMessages);
        Assert.Equal(10.0, r.OutputTokensPerSecond, 9);
        Assert.Equal(1.0, r.RequestsPerSecond, 9);
        Assert.Equal(60.0, r.TotalTokensPerSecond, 9);
        Assert.Equal(0.2, r.Ttft.Mean, 9);
        Assert.Equal(1.25, r.EndToEnd.P50, 9);
        Assert.Equal(4, r.Itl.Count);
        Assert.Equal(0.15, r.Itl.Mean, 9);
    }

    [Fact]
    public void WriteJson_OneSnakeCaseObjectWithConfigFiguresAndErrors()
    {
        using var buffer = new MemoryStream();
        SampleReport().WriteJson(buffer);

        using var doc = JsonDocument.Parse(buffer.ToArray());
        JsonElement root = doc.RootElement;
        Assert.Equal(
            ["config", "requests", "completed", "rejected", "errors", "retries", "interrupted", "duration_s", "requests_per_second", "input_tokens", "output_tokens",
             "output_tokens_per_second", "total_tokens_per_second", "ttft_ms", "itl_ms", "e2e_ms", "error_messages", "retry_messages"],
            root.EnumerateObject().Select(p => p.Name));
        Assert.Equal(
            ["url", "model", "workload", "concurrency", "num_prompts", "input_len", "output_len", "trace_scale", "trace_block_tokens", "seed"],
            root.GetProperty("config").EnumerateObject().Select(p => p.Name));
        Assert.Equal(50, root.GetProperty("config").GetProperty("input_len").GetInt32());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("config").GetProperty("output_len").ValueKind);
        Assert.Equal(["count", "mean", "p50", "p90", "p99"], root.GetProperty("ttft_ms").EnumerateObject().Select(p => p.Name));
        Assert.Equal(200.0, root.GetProperty("ttft_ms").GetProperty("mean").GetDouble(), 6);
        Assert.Equal(1250.0, root.GetProperty("e2e_ms").GetProperty("p50").GetDouble(), 6);
        Assert.Equal(10.0, root.GetProperty("output_tokens_per_second").GetDouble());
        Assert.Equal(2, root.GetProperty("error_messages").GetArrayLength());
    }

    [Fact]
    public void WriteTable_SummaryLatencyRowsInMillisecondsAndErrors()
    {
        var text = new StringWriter();
        SampleReport().WriteTable(text);
        string s = text.ToString();

        Assert.Contains("completed 2, rejected 1 (HTTP 429/503), errors 2, duration 2.00 s", s);
        Assert.Contains("requests/s 1.00, output tok/s 10.0, total tok/s 60.0", s);
        Assert.Contains("| latency (ms) | mean | p50 | p90 | p99 | n |", s);
        Assert.Contains("| TTFT | 200.0 | 200.0 | 280.0 | 298.0 | 2 |", s);
        Assert.Contains("| end-to-end | 1250.0 | 1250.0 | 1450.0 | 1495.0 | 2 |", s);
        Assert.Contains("  HTTP 500: boom", s);
    }

    [Fact]
    public async Task ProgressLine_ShowsDoneTotalOkErrAndTokensPerSecond()
    {
        var output = new StringWriter();
        await using (var progress = new LoadProgress(output, 4, TimeProvider.System, TimeSpan.FromHours(1)))
        {
            progress.Completed(new RequestResult { Outcome = RequestOutcome.Ok, OutputTokens = 5 });
            progress.Completed(new RequestResult { Outcome = RequestOutcome.Rejected });

            Assert.Matches(@"^2/4  ok 1  err 1  \d+\.\d s  \d+\.\d tok/s$", progress.Line());
        }

        // Spectre.Console's live display: the last frame drawn holds the final figures beside a half-full bar.
        string text = output.ToString();
        string last = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last(l => l.Contains("/4", StringComparison.Ordinal));
        Assert.Contains("2/4  ok 1  err 1  ", last);
        Assert.Contains("\u001b[", text);
    }
}

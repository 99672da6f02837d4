using System.Text.RegularExpressions;
using Dynamo.Engine.Models.Synth;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

public class BenchCommandTests
{
    private static string TinyModel()
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-bench-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "tiny.gguf");
        SynthModelWriter.Write(SynthModelOptions.Tiny, SynthOutputOptions.Default with { OutputPath = path });
        return path;
    }

    [Fact]
    public void BenchForward_TinyModel_ReportsPromptAndGenerationRates()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "forward", "--model", TinyModel(), "--prompt-tokens", "32", "--gen-tokens", "16", "--repetitions", "2", "--threads", "1"]);

        Assert.Equal(0, r.ExitCode);
        Assert.Matches(new Regex(@"^pp32: \d+\.\d ± \d+\.\d tok/s \(median \d+\.\d, 2 runs\)$", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^tg16: \d+\.\d ± \d+\.\d tok/s \(median \d+\.\d, 2 runs\)$", RegexOptions.Multiline), r.Stdout);
    }

    [Fact]
    public void BenchForward_MoreTokensThanContext_OneLineError()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "forward", "--model", TinyModel(), "--prompt-tokens", "4096"]);

        Assert.NotEqual(0, r.ExitCode);
        string line = Assert.Single(r.StderrLines);
        Assert.StartsWith("error: ", line);
        Assert.Contains("context length", line);
    }

    [Fact]
    public void BenchEngine_TinyModelJson_ReportsEveryLevelAndThePrefixSection()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "engine", "--model", TinyModel(), "--concurrency", "1,3", "--prompt-tokens", "20", "--output-tokens", "8", "--shared-prefix", "100", "--threads", "1", "--json"]);

        Assert.Equal(0, r.ExitCode);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var levels = doc.RootElement.GetProperty("levels").EnumerateArray().ToList();
        Assert.Equal([1, 3], levels.Select(l => l.GetProperty("concurrency").GetInt32()));
        Assert.Equal([8, 24], levels.Select(l => l.GetProperty("output_tokens").GetInt32()));
        Assert.All(levels, l => Assert.Equal(0, l.GetProperty("failed").GetInt32()));
        Assert.All(levels, l => Assert.True(l.GetProperty("output_tokens_per_second").GetDouble() > 0));
        Assert.All(levels, l => Assert.True(l.GetProperty("ttft").GetProperty("p99_ms").GetDouble() >= l.GetProperty("ttft").GetProperty("p50_ms").GetDouble()));
        var prefix = doc.RootElement.GetProperty("shared_prefix");
        Assert.Equal(100, prefix.GetProperty("prefix_tokens").GetInt32());
        Assert.True(prefix.GetProperty("hit_rate").GetDouble() > 0.5);
    }

    [Fact]
    public void BenchEngine_Table_HasTheColumns()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "engine", "--model", TinyModel(), "--concurrency", "2", "--prompt-tokens", "10", "--output-tokens", "4", "--shared-prefix", "0", "--threads", "1"]);

        Assert.Equal(0, r.ExitCode);
        Assert.Contains("| concurrency | requests | output tok/s | TTFT mean | TTFT p50 | TTFT p99 | ITL mean | ITL p50 | ITL p99 | failed |", r.Stdout);
        Assert.Matches(new Regex(@"^\| 2 \| 2 \| \d+\.\d \|", RegexOptions.Multiline), r.Stdout);
    }

    [Fact]
    public void BenchEngine_BadConcurrency_OneLineError()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "engine", "--model", TinyModel(), "--concurrency", "1,x"]);

        Assert.NotEqual(0, r.ExitCode);
        Assert.StartsWith("error: --concurrency", Assert.Single(r.StderrLines));
    }
}

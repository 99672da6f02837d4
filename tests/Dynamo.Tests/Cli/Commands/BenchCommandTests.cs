using System.Text.Json;
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
    public void BenchForward_BatchAndJson_OneObjectOnStdoutWithEveryFigure_LinesOnStderr()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "forward", "--model", TinyModel(), "-p", "16", "-n", "8", "-r", "2", "-t", "1", "--batch", "3", "--json"]);

        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement o = doc.RootElement;
        Assert.Equal((1, 3, 16, 8), (o.GetProperty("threads").GetInt32(), o.GetProperty("batch").GetInt32(), o.GetProperty("prompt_tokens").GetInt32(), o.GetProperty("gen_tokens").GetInt32()));
        Assert.All(new[] { "pp_tok_s", "tg_tok_s", "batch_tg_tok_s" }, name => Assert.True(o.GetProperty(name).GetDouble() > 0, name));
        Assert.True(o.GetProperty("model_bytes").GetInt64() > 0);
        Assert.False(string.IsNullOrWhiteSpace(o.GetProperty("cpu").GetString()));
        Assert.False(string.IsNullOrWhiteSpace(o.GetProperty("isa").GetString()));
        Assert.Matches(new Regex(@"^tg8 x 3 seqs: \d+\.\d ± \d+\.\d tok/s \(median \d+\.\d, 2 runs\)$", RegexOptions.Multiline), r.Stderr);
    }

    [Fact]
    public void BenchForward_BatchPrompt_DecodesFromThatContext_ReportedInJson()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "forward", "--model", TinyModel(), "-p", "0", "-n", "4", "-r", "1", "-t", "1", "--batch", "2", "--batch-prompt", "40", "--json"]);

        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement o = doc.RootElement;
        Assert.Equal((2, 40), (o.GetProperty("batch").GetInt32(), o.GetProperty("batch_prompt_tokens").GetInt32()));
        Assert.True(o.GetProperty("batch_tg_tok_s").GetDouble() > 0);
        Assert.Matches(new Regex(@"^tg4 x 2 seqs: \d+\.\d ± \d+\.\d tok/s", RegexOptions.Multiline), r.Stderr);
    }

    [Fact]
    public void BenchForward_BatchPromptPastContext_OneLineError()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "forward", "--model", TinyModel(), "-p", "0", "-n", "8", "--batch", "2", "--batch-prompt", "100000"]);

        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith("error: --batch-prompt 100000 + tg8 needs 100008 positions; the model's context length is ", Assert.Single(r.StderrLines), StringComparison.Ordinal);
    }

    [Fact]
    public void BenchForward_BatchOutOfRange_OneLineError()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "forward", "--model", TinyModel(), "--batch", "33"]);

        Assert.Equal(1, r.ExitCode);
        Assert.Equal("error: --batch: 33 is outside 0..32 (0 skips the batched test)", Assert.Single(r.StderrLines));
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

    [Fact]
    public void BenchFrontend_Json_EveryLayerWithItsFigures()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "frontend", "--requests", "20", "--concurrency", "2", "--tokens", "8", "--json"]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        Assert.Equal(20, doc.RootElement.GetProperty("requests").GetInt32());
        var layers = doc.RootElement.GetProperty("layers").EnumerateArray().ToList();
        Assert.Equal(["engine direct", "worker endpoint (runtime)", "HTTP frontend + SSE"], layers.Select(l => l.GetProperty("layer").GetString()));
        Assert.All(layers, l => Assert.True(l.GetProperty("requests_per_second").GetDouble() > 0));
        Assert.All(layers, l => Assert.True(l.GetProperty("latency_p99_ms").GetDouble() >= l.GetProperty("latency_p50_ms").GetDouble()));
        Assert.Contains("HTTP frontend + SSE: ", r.Stderr);
    }

    [Fact]
    public void BenchRouting_Json_OneObjectPerModeAllCompleted()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "routing", "--workers", "2", "--modes", "kv,round-robin", "--num-prompts", "8", "--input-len", "40", "--output-len", "2",
            "--prefix-groups", "2", "--request-rate", "0", "--concurrency", "4", "--speedup-ratio", "50", "--json"]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("workers").GetInt32());
        Assert.Equal("shared-prefix", doc.RootElement.GetProperty("workload").GetString());
        var modes = doc.RootElement.GetProperty("modes").EnumerateArray().ToList();
        Assert.Equal(["kv", "round-robin"], modes.Select(m => m.GetProperty("mode").GetString()));
        Assert.All(modes, m => Assert.Equal(8, m.GetProperty("completed").GetInt32()));
        Assert.All(modes, m => Assert.InRange(m.GetProperty("prefix_hit_rate").GetDouble(), 0, 1));
    }

    [Fact]
    public void BenchRouting_UnknownMode_OneLineErrorNamingIt()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "routing", "--modes", "kv,nope"]);

        Assert.Equal(1, r.ExitCode);
        Assert.Equal("error: --router-mode: 'nope' is not one of round-robin, random, kv", Assert.Single(r.StderrLines));
    }

    [Fact]
    public void BenchRouter_SmallIndexJson_EveryFigure()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "router", "--workers", "4", "--blocks", "4000", "--decisions", "500", "--json"]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        Assert.Equal(4, doc.RootElement.GetProperty("workers").GetInt32());
        Assert.Equal(500, doc.RootElement.GetProperty("decisions").GetInt32());
        Assert.True(doc.RootElement.GetProperty("indexed_blocks").GetInt32() >= 4000);
        Assert.True(doc.RootElement.GetProperty("events_per_second").GetDouble() > 0);
        Assert.True(doc.RootElement.GetProperty("decision_p99_us").GetDouble() >= doc.RootElement.GetProperty("decision_p50_us").GetDouble());
        Assert.Contains("bench router: timing 500 decisions...", r.Stderr);
    }
}

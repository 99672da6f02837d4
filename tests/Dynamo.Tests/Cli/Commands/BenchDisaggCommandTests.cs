using System.Text.Json;
using System.Text.RegularExpressions;
using Dynamo.Engine.Models.Synth;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary><c>dynamo bench disagg</c>: small runs of the real command, both engines, and its one-line errors.</summary>
public sealed class BenchDisaggCommandTests
{
    [Fact]
    public void BenchDisagg_MockerQuickJson_BothDeploymentsCompleteAndTheLongPromptsPrefillRemotely()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "disagg", "--engine", "mocker", "--quick", "--kv-bytes-per-token", "4096", "--transfer-repetitions", "1", "--json"], TimeSpan.FromMinutes(4));

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal("mocker", root.GetProperty("engine").GetString());
        Assert.False(string.IsNullOrEmpty(root.GetProperty("cpu").GetString()));
        Assert.Equal(24, root.GetProperty("workload").GetProperty("requests").GetInt32());
        Assert.Equal(6, root.GetProperty("workload").GetProperty("long_requests").GetInt32());
        Assert.Equal(1050, root.GetProperty("disaggregation").GetProperty("max_local_prefill_length").GetInt32());
        Assert.Contains("4,096 bytes per token over 10 Gbit/s", root.GetProperty("simulated_link").GetString());

        JsonElement[] deployments = [.. root.GetProperty("deployments").EnumerateArray()];
        Assert.Equal(["aggregated", "disaggregated"], deployments.Select(d => d.GetProperty("deployment").GetString()));
        Assert.Equal(["4 aggregated", "2 prefill + 2 decode"], deployments.Select(d => d.GetProperty("workers").GetString()));
        foreach (JsonElement d in deployments)
        {
            Assert.Equal(24, d.GetProperty("completed").GetInt32());
            Assert.Equal(0, d.GetProperty("failed").GetInt32());
            Assert.Equal(24 * 128, d.GetProperty("output_tokens").GetInt32());
            Assert.True(d.GetProperty("output_tokens_per_second").GetDouble() > 0);
            Assert.True(d.GetProperty("itl_ms").GetProperty("p99").GetDouble() >= d.GetProperty("itl_ms").GetProperty("p50").GetDouble());
            Assert.Equal(24, d.GetProperty("ttft_ms").GetProperty("count").GetInt32());
            Assert.Equal(6, d.GetProperty("ttft_long_ms").GetProperty("count").GetInt32());
            Assert.Equal(18, d.GetProperty("ttft_short_ms").GetProperty("count").GetInt32());
        }

        JsonElement agg = deployments[0], disagg = deployments[1];
        Assert.Equal(0, agg.GetProperty("remote_prefills").GetInt32());
        Assert.Equal(24, agg.GetProperty("local_prefills").GetInt32());
        Assert.Equal(6, disagg.GetProperty("remote_prefills").GetInt32());
        Assert.Equal(18, disagg.GetProperty("local_prefills").GetInt32());
        Assert.Equal(6, disagg.GetProperty("prefills_served").GetInt32());
        Assert.Equal(6, disagg.GetProperty("decisions").GetProperty("remote/long_prompt").GetInt32());
        Assert.Equal(18, disagg.GetProperty("decisions").GetProperty("local/short_prompt").GetInt32());
        Assert.Empty(disagg.GetProperty("fallbacks").EnumerateObject());
        Assert.Equal(6L * 1999 * 4096, disagg.GetProperty("transfer_bytes").GetInt64());
        Assert.True(disagg.GetProperty("transfer_mean_ms").GetDouble() > 0);

        JsonElement transfer = root.GetProperty("transfer");
        Assert.Equal(1999L * 4096, transfer.GetProperty("size_bytes").GetInt64());
        foreach (string figure in new[] { "memcpy_gbps", "tcp_gbps", "transfer_gbps", "transfer_vs_tcp", "pooled_gbps" })
        {
            Assert.True(transfer.GetProperty(figure).GetDouble() > 0, figure);
        }

        JsonElement ratios = root.GetProperty("ratios");
        Assert.True(ratios.GetProperty("itl_p99_aggregated_over_disaggregated").GetDouble() > 0);
        Assert.True(ratios.GetProperty("output_tokens_per_second_disaggregated_over_aggregated").GetDouble() > 0);
        Assert.Contains("bench disagg: disaggregated: warmed up", r.Stderr);
    }

    [Fact]
    public void BenchDisagg_MockerTable_OneRowPerDeploymentAndTheSetup()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "disagg", "--engine", "mocker", "--quick", "--deployments", "disaggregated", "--num-prompts", "8", "--transfer-repetitions", "0"], TimeSpan.FromMinutes(4));

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("| deployment | workers | completed | failed | TTFT mean ms | TTFT p50 ms | TTFT p99 ms | ITL mean ms | ITL p50 ms | ITL p99 ms | output tok/s | remote prefills | local prefills | KV MB transferred | transfer mean ms |", r.Stdout);
        Assert.Matches(new Regex(@"^\| disaggregated \| 2 prefill \+ 2 decode \| 8 \| 0 \|( [\d.]+ \|){7} 2 \| 6 \| [\d.]+ \| [\d.]+ \|$", RegexOptions.Multiline), r.Stdout);
        Assert.Contains("workload: 8 requests, Poisson arrivals at 20/s (seed 1234): 2 long prompts of 2000 tokens, 6 short of 100, 128 output tokens each (ignore_eos)", r.Stdout);
        Assert.Contains("cpu: ", r.Stdout);
        Assert.DoesNotContain("| aggregated |", r.Stdout);
    }

    [Theory]
    [InlineData(new[] { "--engine", "dynamo" }, "error: --model is required with --engine dynamo")]
    [InlineData(new[] { "--engine", "gpu" }, "error: --engine: 'gpu' is not dynamo or mocker")]
    [InlineData(new[] { "--engine", "mocker", "--max-local-prefill-length", "5000" }, "error: --max-local-prefill-length 5000 must lie from --short-len (100) to below --long-len (2000)")]
    [InlineData(new[] { "--engine", "mocker", "--deployments", "both" }, "error: --deployments: 'both' is not aggregated or disaggregated")]
    [InlineData(new[] { "--engine", "mocker", "--link-gbps", "0" }, "error: --link-gbps must be a positive number (got 0)")]
    public void BenchDisagg_BadFlags_OneLineErrorNamingTheFlag(string[] flags, string error)
    {
        CliProcess.Result r = CliProcess.Run(["bench", "disagg", .. flags]);

        Assert.Equal(1, r.ExitCode);
        Assert.StartsWith(error, Assert.Single(r.StderrLines));
    }

    [Fact]
    public void BenchDisagg_DynamoModelTooShortForTheLongPrompts_OneLineError()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "disagg", "--model", TinyModel(contextLength: 256), "--long-len", "300", "--short-len", "20"]);

        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--long-len 300 + --output-len 128 needs a context of 428 tokens", Assert.Single(r.StderrLines));
    }

    /// <summary>The built-in engine in worker processes on nats-server and etcd started by the bench (the tiny model, a handful of requests).</summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void BenchDisagg_DynamoWorkerProcessesQuickJson_RemotePrefillsMoveTheModelsKv()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "disagg", "--model", TinyModel(contextLength: 512), "--quick", "--long-len", "300", "--short-len", "20", "--output-len", "16",
            "--long-fraction", "0.5", "--transfer-repetitions", "1", "--json"], TimeSpan.FromMinutes(8));

        Assert.True(r.ExitCode == 0, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        JsonElement root = doc.RootElement;
        Assert.Equal("dynamo", root.GetProperty("engine").GetString());
        Assert.Equal(256, root.GetProperty("kv_bytes_per_token").GetInt32()); // f16, the workers' default
        Assert.Contains("nats-server", root.GetProperty("infrastructure").GetString());
        JsonElement[] deployments = [.. root.GetProperty("deployments").EnumerateArray()];
        Assert.All(deployments, d => Assert.Equal(4, d.GetProperty("completed").GetInt32()));
        JsonElement disagg = deployments[1];
        Assert.Equal(2, disagg.GetProperty("remote_prefills").GetInt32());
        Assert.Equal(2L * 299 * 256, disagg.GetProperty("transfer_bytes").GetInt64());
        Assert.Equal(0, deployments[0].GetProperty("remote_prefills").GetInt32());
        Assert.Matches(new Regex(@"prefill worker 1 serving \(pid \d+, /metrics on port \d+\)"), r.Stderr);
    }

    private static string TinyModel(int contextLength)
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-bench-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "tiny.gguf");
        SynthModelWriter.Write(SynthModelOptions.Tiny with { ContextLength = contextLength }, SynthOutputOptions.Default with { OutputPath = path });
        return path;
    }
}

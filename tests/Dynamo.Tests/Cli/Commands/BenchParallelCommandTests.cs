using System.Text.RegularExpressions;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli.Commands;

/// <summary><c>dynamo bench parallel</c> at a tiny size: rank processes started and stopped, every table printed.</summary>
public sealed class BenchParallelCommandTests
{
    [Fact]
    [Trait("Category", "Slow")]
    public void BenchParallel_TinyModelOneAndTwoRanks_PrintsThroughputAllReduceAndProjection()
    {
        CliProcess.Result r = CliProcess.Run(
            ["bench", "parallel", "--model", TestModels.Tiny.Value, "--tp", "1,2", "--pp", "2", "-p", "8", "-n", "4", "-b", "2", "-r", "1", "--all-reduce-floats", "1,64"], TimeSpan.FromMinutes(3));

        Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr);
        Assert.Matches(new Regex(@"^\| 1 \| [\d.]+ \| [\d.]+ \| 1\.00x \| [\d.]+ \| 1\.00x \|", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^\| tp 2 \| [\d.]+ \| [\d.]+ \| [\d.]+x \| [\d.]+ \| [\d.]+x \| [\d.]+ % / [\d.]+ % / [\d.]+ % \| [\d.]+ MB \|", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^\| pp 2 \| [\d.]+ \| [\d.]+ \| [\d.]+x \| [\d.]+ \| [\d.]+x \| [\d.]+ % / [\d.]+ % / [\d.]+ % \| [\d.]+ MB \|", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^\| 2 \| 4 \| [\d.]+ \| [\d.]+ \|", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^\| 2 \| 256 \| [\d.]+ \| [\d.]+ \|", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^\| tp 2 \| 100 GB/s, 2 us \| [\d.]+ \|", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^\| pp 2 \(M = 2\) \| 1 GB/s, 50 us \| [\d.]+ \|", RegexOptions.Multiline), r.Stdout);
        Assert.Contains("on link 1 GB/s, 50 us, pipeline beats tensor parallelism at 2 ranks (M = 2) for a step of one decode token: when its 1-rank compute is under", r.Stdout);
        Assert.Contains("rank 1: rank 0 stopped", r.Stderr);
        Assert.Contains("pp 2: layers 0-0, 1-1 of 2", r.Stderr);
    }

    [Fact]
    public void BenchParallel_ModelThatDoesNotSplit_OneLine()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "parallel", "--model", TestModels.Tiny.Value, "--tp", "3", "--all-reduce-floats", ""]);

        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--tensor-parallel-size 3: the model's 2 KV heads do not divide by 3", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }
}

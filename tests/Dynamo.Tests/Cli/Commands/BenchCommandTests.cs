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
    public void BenchEngine_TinyModel_ReportsPromptAndGenerationRates()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "engine", "--model", TinyModel(), "--prompt-tokens", "32", "--gen-tokens", "16", "--repetitions", "2", "--threads", "1"]);

        Assert.Equal(0, r.ExitCode);
        Assert.Matches(new Regex(@"^pp32: \d+\.\d ± \d+\.\d tok/s \(median \d+\.\d, 2 runs\)$", RegexOptions.Multiline), r.Stdout);
        Assert.Matches(new Regex(@"^tg16: \d+\.\d ± \d+\.\d tok/s \(median \d+\.\d, 2 runs\)$", RegexOptions.Multiline), r.Stdout);
    }

    [Fact]
    public void BenchEngine_MoreTokensThanContext_OneLineError()
    {
        CliProcess.Result r = CliProcess.Run(["bench", "engine", "--model", TinyModel(), "--prompt-tokens", "4096"]);

        Assert.NotEqual(0, r.ExitCode);
        string line = Assert.Single(r.StderrLines);
        Assert.StartsWith("error: ", line);
        Assert.Contains("context length", line);
    }
}

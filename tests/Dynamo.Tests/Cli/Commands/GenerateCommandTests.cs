using System.Text.RegularExpressions;
using Dynamo.Engine.Models.Synth;
using Dynamo.Tests.Engine.Inference;
using Dynamo.Tests.Infrastructure;
using Dynamo.Tests.Llm.ModelFiles;

namespace Dynamo.Tests.Cli.Commands;

/// <summary><c>dynamo generate</c> run as a real process: exact output on the shared models, one clean error line on bad input.</summary>
[Collection(TimingCollection.Name)]
public sealed partial class GenerateCommandTests
{
    private static string Stories(string file) => SharedData.Path("models", "stories260K", file);

    private static string[] Llama2c => ["--model", Stories("stories260K.bin"), "--tokenizer", Stories("tok512.bin")];

    [GeneratedRegex(@"^prompt tokens: 1, generated tokens: 256, prefill: \d+(\.\d+)? tok/s, decode: \d+(\.\d+)? tok/s$")]
    private static partial Regex Stats256();

    private static CliProcess.Result Generate(params string[] args) => CliProcess.Run(["generate", .. args]);

    [SharedTheory]
    [InlineData("llama2c")]
    [InlineData("gguf")]
    public void Generate_Stories260KGreedy256_PrintsRunCReferenceAndStats(string format)
    {
        string[] model = format == "gguf" ? ["--model", SharedData.Path("oracle", "stories260K.gguf")] : Llama2c;

        CliProcess.Result r = Generate([.. model, "--temperature", "0", "--max-tokens", "256"]);

        Assert.Equal(0, r.ExitCode);
        // run.c's output, like ours, ends with the newline printed after the completion.
        Assert.Equal(File.ReadAllText(Stories("expected_t0_n256.txt")), r.Stdout);
        Assert.Matches(Stats256(), r.StderrLines[^1]);
    }

    [SharedFact]
    public void Generate_TinyStoriesHfGreedy_PrintsReferenceContinuation()
    {
        Dictionary<string, string> p1 = OracleFiles.Section("tinystories656k_greedy.txt", "P1");
        string prompt = OracleFiles.JsonString(p1["prompt"]);
        int steps = OracleFiles.Ids(p1["continuation_ids"]).Length;

        CliProcess.Result r = Generate("--model", SharedData.Path("models", "tinystories-656k"), "--prompt", prompt,
            "--temperature", "0", "--max-tokens", steps.ToString(System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal(0, r.ExitCode);
        // stdout is the continuation alone (decode(continuation_ids), what the oracle calls "continuation"), then one newline.
        Assert.Equal(OracleFiles.JsonString(p1["continuation"]) + "\n", r.Stdout);
        Assert.StartsWith($"prompt tokens: 1, generated tokens: {steps},", r.StderrLines[^1], StringComparison.Ordinal);
    }

    [SharedFact]
    public void Generate_StopString_NeverPrinted()
    {
        CliProcess.Result r = Generate([.. Llama2c, "--temperature", "0", "--max-tokens", "256", "--stop", "Lily"]);

        string expected = File.ReadAllText(Stories("expected_t0_n256.txt"));
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(expected[..expected.IndexOf("Lily", StringComparison.Ordinal)] + "\n", r.Stdout);
    }

    private static void AssertOneErrorLine(CliProcess.Result r, params string[] mentions)
    {
        Assert.NotEqual(0, r.ExitCode);
        string[] lines = r.StderrLines;
        string line = Assert.Single(lines);
        Assert.StartsWith("error: ", line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", r.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("(Parameter", line, StringComparison.Ordinal);
        foreach (string m in mentions)
        {
            Assert.Contains(m, line, StringComparison.Ordinal);
        }

        // No hang: a bad file fails at once (about 0.3 s alone); the bound only allows for a busy CI machine.
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(90), $"took {r.Elapsed}");
    }

    [Fact]
    public void Generate_NonexistentModel_OneErrorLine()
    {
        string path = Path.Combine(Path.GetTempPath(), "dynamo-no-such-dir", "model.gguf");

        AssertOneErrorLine(Generate("--model", path), path, "no such file");
    }

    [Theory]
    [InlineData("empty.bin", 0, "empty")]
    [InlineData("empty.gguf", 0, "empty")]
    [InlineData("random.bin", 1, "impossible header")]
    [InlineData("random.gguf", 1, "not a GGUF file")]
    [InlineData("wrong-magic.gguf", 2, "not a GGUF file")]
    [InlineData("ggjt.gguf", 3, "not a GGUF file")]
    public void Generate_BadModelFile_OneErrorLineNamingFile(string name, int kind, string problem)
    {
        using var dir = new TempDir();
        string path = dir.File(name);
        byte[] content = kind switch
        {
            0 => [],
            1 => RandomBytes(4096),
            // GGUF's header with a wrong magic, then llama.cpp's legacy GGJT magic ("ggjt" as a little-endian u32).
            2 => [.. "GGUX"u8, .. BitConverter.GetBytes(3u), .. new byte[64]],
            _ => [.. "tjgg"u8, .. BitConverter.GetBytes(3u), .. new byte[64]],
        };
        File.WriteAllBytes(path, content);

        AssertOneErrorLine(Generate("--model", path, "--max-tokens", "4"), path, problem);
    }

    private static byte[] RandomBytes(int n)
    {
        var bytes = new byte[n];
        new Random(12345).NextBytes(bytes);
        return bytes;
    }

    [SharedTheory]
    [InlineData("oracle/stories260K.gguf", 1000)]
    [InlineData("models/stories260K/stories260K.bin", -2)]
    public void Generate_TruncatedModel_OneErrorLineNamingFile(string source, int keep)
    {
        using var dir = new TempDir();
        byte[] whole = File.ReadAllBytes(SharedData.Path(source.Split('/')));
        string path = dir.File(Path.GetFileName(source));
        File.WriteAllBytes(path, whole[..(keep > 0 ? keep : whole.Length / -keep)]);

        AssertOneErrorLine(Generate("--model", path, "--tokenizer", Stories("tok512.bin"), "--max-tokens", "4"), path);
    }

    [SharedFact]
    public void Generate_Llama2cWithoutTokenizer_OneErrorLineAskingForIt()
    {
        AssertOneErrorLine(Generate("--model", Stories("stories260K.bin")), Stories("stories260K.bin"), "--tokenizer");
    }

    [SharedFact]
    public void Generate_PromptLongerThanContext_OneErrorLineWithBothNumbers()
    {
        string prompt = string.Concat(Enumerable.Repeat("Once upon a time there was a cat. ", 80));

        AssertOneErrorLine(Generate([.. Llama2c, "--prompt", prompt]), "512", "prompt has");
    }

    [SharedTheory]
    [InlineData("--temperature", "5", "--temperature")]
    [InlineData("--top-p", "0", "--top-p")]
    [InlineData("--max-tokens", "0", "--max-tokens")]
    [InlineData("--threads", "0", "--threads")]
    public void Generate_OutOfRangeFlag_OneErrorLineNamingFlag(string flag, string value, string mention)
    {
        AssertOneErrorLine(Generate([.. Llama2c, flag, value]), mention, value);
    }

    [SharedTheory]
    [InlineData("llama2c")]
    [InlineData("gguf")]
    [InlineData("hf")]
    public void Generate_ChatOnModelWithoutTemplate_OneErrorLine(string format)
    {
        string[] model = format switch
        {
            "gguf" => ["--model", SharedData.Path("oracle", "stories260K.gguf")],
            "hf" => ["--model", SharedData.Path("models", "tinystories-656k")],
            _ => Llama2c,
        };

        AssertOneErrorLine(Generate([.. model, "--chat", "--prompt", "hi"]), "no chat template");
    }

    [Fact]
    public void Generate_SynthesizedGgufSeeded_ReproducibleAcrossRuns()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.gguf");
        SynthModelWriter.Write(SynthModelOptions.Tiny,
            SynthOutputOptions.Default with { OutputPath = path });
        string[] args = ["--model", path, "--seed", "7", "--max-tokens", "40", "--ignore-eos", "--temperature", "1.5"];

        CliProcess.Result a = Generate(args);
        CliProcess.Result b = Generate(args);

        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.Stdout, b.Stdout);
        Assert.StartsWith("prompt tokens: 1, generated tokens: 40,", a.StderrLines[^1], StringComparison.Ordinal);
    }
}

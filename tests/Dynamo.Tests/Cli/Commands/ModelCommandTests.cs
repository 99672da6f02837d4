using Dynamo.Cli;
using Dynamo.Tests.Engine.Models.Synth;

namespace Dynamo.Tests.Cli.Commands;

public sealed class ModelCommandTests
{
    [Fact]
    public async Task Synth_TinyLlama2c_WritesCheckpointAndTokenizerBeside()
    {
        string path = SynthTestFiles.TempPath("tiny.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);

        int rc = await InvokeAsync("model", "synth", "--preset", "tiny", "--format", "llama2c", "--untied", "--seed", "5", "-o", path);

        Assert.Equal(0, rc);
        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(-512, BitConverter.ToInt32(file, 20));
        Assert.True(File.Exists(Path.Combine(Path.GetDirectoryName(path)!, "tiny.tokenizer.bin")));
        Assert.False(File.Exists(path + ".partial"));
    }

    [Fact]
    public async Task Synth_ExplicitShapeGgufQ8_0_WritesFile()
    {
        string path = SynthTestFiles.TempPath("m.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);

        int rc = await InvokeAsync("model", "synth", "--dim", "32", "--hidden-dim", "64", "--layers", "1", "--heads", "2", "--kv-heads", "1",
            "--vocab", "300", "--context-length", "16", "--type", "Q8_0", "-o", path);

        Assert.Equal(0, rc);
        SynthTestFiles.Gguf g = SynthTestFiles.ReadGguf(File.ReadAllBytes(path));
        Assert.Equal(32u, g.Metadata["llama.embedding_length"]);
        Assert.Equal(7u, g.Metadata["general.file_type"]);
    }

    [Theory]
    [InlineData("--preset", "7b")]
    [InlineData("--type", "Q5_K")]
    [InlineData("--format", "onnx")]
    [InlineData("--dim", "66")]
    [InlineData("--tied", "--untied")]
    [InlineData("--format", "hf", "--type", "Q4_0")]
    [InlineData("--format", "llama2c", "--type", "F16")]
    public async Task Synth_BadFlags_NonZeroExit(params string[] flags)
    {
        string path = SynthTestFiles.TempPath("bad.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);

        int rc = await InvokeAsync(["model", "synth", .. flags, "-o", path]);

        Assert.NotEqual(0, rc);
        Assert.False(File.Exists(path));
    }

    // In-process, as `dynamo` runs it (one-line errors, exit code 1).
    private static Task<int> InvokeAsync(params string[] args) => Program.InvokeAsync(args);
}

using Dynamo.Components.Workers;
using Dynamo.Engine.Models.Synth;
using Dynamo.Llm.ModelFiles;

namespace Dynamo.Tests.Components.Workers;

/// <summary>The weights' identity a decode and a prefill worker compare: equal for the same weights, different for others.</summary>
public sealed class ModelFingerprintTests
{
    [Fact]
    public void Of_SameWeightsAnywhere_SameFingerprint_OtherSeedOrFormat_Another()
    {
        string dir = Path.Combine(Path.GetTempPath(), "dynamo-fingerprint-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string a = Write(Path.Combine(dir, "a.gguf"), SynthModelOptions.Tiny);
            string b = Write(Path.Combine(dir, "b.gguf"), SynthModelOptions.Tiny);
            string c = Write(Path.Combine(dir, "c.gguf"), SynthModelOptions.Tiny with { Seed = SynthModelOptions.Tiny.Seed + 1 });
            Directory.CreateDirectory(Path.Combine(dir, "elsewhere"));
            File.Copy(a, Path.Combine(dir, "elsewhere", "renamed.gguf"));

            Assert.Matches("^[0-9a-f]{16}$", ModelFingerprint.Of(a));
            Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
            Assert.Equal(ModelFingerprint.Of(a), ModelFingerprint.Of(b));
            Assert.Equal(ModelFingerprint.Of(a), ModelFingerprint.Of(Path.Combine(dir, "elsewhere", "renamed.gguf")));
            Assert.NotEqual(ModelFingerprint.Of(a), ModelFingerprint.Of(c));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static string Write(string path, SynthModelOptions options)
    {
        SynthModelWriter.Write(options, SynthOutputOptions.Default with { OutputPath = path, Type = GgmlType.F32 });
        return path;
    }
}

using System.Diagnostics;
using Dynamo.Llm.Tokenizers;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Llm.Tokenizers;

/// <summary>The committed NFC tables are exactly what their generator (UnicodeNormalizationData.py beside them) writes.</summary>
public sealed class UnicodeNormalizationDataTests
{
    [Fact]
    public async Task Generator_ThisUnicodeVersion_ReproducesTheCommittedFileByteForByte()
    {
        string folder = Path.Combine(RepoPaths.Root, "src", "Dynamo.Llm", "Tokenizers");
        var start = new ProcessStartInfo("python3")
        {
            ArgumentList = { Path.Combine(folder, "UnicodeNormalizationData.py"), UnicodeNormalizationData.UnicodeVersion },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        Process python;
        try
        {
            python = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"python3 is needed to check the generated Unicode tables ({e.Message}): apt-get install python3");
            return;
        }

        using (python)
        {
            Task<string> output = python.StandardOutput.ReadToEndAsync();
            string error = await python.StandardError.ReadToEndAsync();
            await python.WaitForExitAsync();
            Assert.True(python.ExitCode == 0, $"the generator failed: {error}");
            Assert.Equal(await File.ReadAllTextAsync(Path.Combine(folder, "UnicodeNormalizationData.cs")), await output);
        }
    }
}

using System.Text.Json;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli;

/// <summary>The runtime settings the CLI ships with (its runtimeconfig.json, which `dotnet dynamo.dll` and the .NET tool both read).</summary>
public sealed class RuntimeConfigTests
{
    [Fact]
    public void RuntimeConfig_TieredJitCountsCallsAtOnceAndStaysOn()
    {
        string path = Path.ChangeExtension(CliProcess.DllPath, ".runtimeconfig.json");
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement properties = doc.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        // A fresh server under load reaches tier-1 code within its first requests (docs/benchmarks.md, "JIT warm-up").
        Assert.Equal(0, properties.GetProperty("System.Runtime.TieredCompilation.CallCountingDelayMs").GetInt32());
        // Tiered compilation itself (with dynamic PGO) stays on: off, batched decode measured about a tenth slower.
        Assert.False(properties.TryGetProperty("System.Runtime.TieredCompilation", out JsonElement tiered) && tiered.ValueKind == JsonValueKind.False);
        Assert.False(properties.TryGetProperty("System.Runtime.TieredPGO", out JsonElement pgo) && pgo.ValueKind == JsonValueKind.False);
    }
}

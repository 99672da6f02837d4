using System.Diagnostics;
using System.Globalization;
using System.Text;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli;

/// <summary>
/// `dynamo` as a .NET tool, as a user gets it: the CLI's Release build (what the test project's build made) packed
/// with `dotnet pack --no-build`, installed with `dotnet tool install --tool-path` from that folder alone (its own
/// NuGet cache, so that no older package of the same version is used), then run from a folder that is not the
/// repository: `dynamo --help`, and `dynamo run` serving the synthesized model, answering a completion with 200.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // the tool's shim is a Unix executable
public sealed class DotnetToolTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "dynamo-tool-tests", Guid.NewGuid().ToString("N"));

    public DotnetToolTests()
    {
        Directory.CreateDirectory(_dir);
    }

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    [Trait("Category", "Slow")]
    public async Task PackInstallRun_FromAnotherFolder_HelpAndCompletionAnswered()
    {
        string packages = Path.Combine(_dir, "nupkg");
        await RunAsync("dotnet", ["pack", Path.Combine(RepoPaths.Root, "src", "Dynamo.Cli", "Dynamo.Cli.csproj"), "-c", "Release", "--no-build", "-o", packages, "-nologo"]);
        Assert.Single(Directory.GetFiles(packages, "Dynamo.Cli.*.nupkg"));

        string config = Path.Combine(_dir, "nuget.config");
        await File.WriteAllTextAsync(config, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{packages}" />
              </packageSources>
            </configuration>
            """);
        string tools = Path.Combine(_dir, "tools");
        await RunAsync("dotnet", ["tool", "install", "Dynamo.Cli", "--tool-path", tools, "--configfile", config]);
        string dynamo = Path.Combine(tools, "dynamo");
        Assert.True(File.Exists(dynamo), $"no {dynamo} after dotnet tool install");

        string work = Path.Combine(_dir, "elsewhere");
        Directory.CreateDirectory(work);
        var environment = new Dictionary<string, string>
        {
            ["DYNAMO_CACHE"] = Path.Combine(_dir, "cache"),
            ["DYNAMO_HOME"] = "",
        };
        string help = await RunAsync(dynamo, ["--help"], work, environment);
        Assert.Contains("run", help, StringComparison.Ordinal);
        Assert.Contains("serve", help, StringComparison.Ordinal);

        int port = LoopbackServers.FreePort();
        await using DynamoProcess run = DynamoProcess.StartExecutable(dynamo, ["run", "--http-port", port.ToString(CultureInfo.InvariantCulture)], environment, work);
        await run.WaitForLineAsync("run: ready:", seconds: 120);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(60) };
        using HttpResponseMessage response = await http.PostAsync("v1/completions", new StringContent(
            """{"model": "dynamo-tiny", "prompt": "Hello", "max_tokens": 8}""", Encoding.UTF8, "application/json"));
        string body = await response.Content.ReadAsStringAsync();

        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {body}\n{run.Output}");
        Assert.Contains("\"text_completion\"", body, StringComparison.Ordinal);
    }

    /// <summary>Runs a command to its end (at most 5 minutes); fails with its output unless it exits 0; returns stdout.</summary>
    private async Task<string> RunAsync(string fileName, string[] args, string? workingDirectory = null, Dictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? _dir,
        };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        // A NuGet cache of its own: the global one may hold an older Dynamo.Cli of the same version.
        start.Environment["NUGET_PACKAGES"] = Path.Combine(_dir, "nuget-packages");
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in environment ?? [])
        {
            start.Environment[k] = v;
        }

        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"{fileName} did not start");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{fileName} {string.Join(' ', args)} did not end within 5 minutes:\n{await stdout}\n{await stderr}");
        }

        Assert.True(process.ExitCode == 0, $"{fileName} {string.Join(' ', args)} exited {process.ExitCode}:\n{await stdout}\n{await stderr}");
        return await stdout;
    }
}

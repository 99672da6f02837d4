using System.Diagnostics;
using System.Text;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Cli;

/// <summary>
/// The `dynamo` launcher script as a process, with a stand-in `dotnet` first on PATH whose build lasts until the
/// test releases it: the first build says it takes a while, shows progress while it runs, says when it is done,
/// then runs the CLI; a failed build shows its errors.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // a bash script
public sealed class LauncherTests : IDisposable
{
    private const string FakeDotnet = """
        #!/usr/bin/env bash
        if [ "$1" = build ]; then
          echo "  Dynamo.Runtime -> /fake/Dynamo.Runtime.dll"
          while [ ! -f "$FAKE_RELEASE" ]; do sleep 0.05; done
          if [ -n "${FAKE_FAIL:-}" ]; then echo "Program.cs(1,1): error CS1002: ; expected"; exit 1; fi
          echo "  Dynamo.Cli -> /fake/dynamo.dll"
          exit 0
        fi
        echo "cli $*"
        """;

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "dynamo-launcher-tests", Guid.NewGuid().ToString("N"));

    public LauncherTests()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "root", "src"));
        Directory.CreateDirectory(Path.Combine(_dir, "bin"));
        File.Copy(Path.Combine(RepoPaths.Root, "dynamo"), Path.Combine(_dir, "root", "dynamo"));
        File.WriteAllText(Path.Combine(_dir, "bin", "dotnet"), FakeDotnet.ReplaceLineEndings("\n") + "\n");
        File.SetUnixFileMode(Path.Combine(_dir, "bin", "dotnet"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public async Task FirstRun_LongBuild_ProgressLinesThenDoneThenTheCli()
    {
        using Process launcher = Start(fail: false);
        var stderr = new StringBuilder();
        Task<string> stdout = launcher.StandardOutput.ReadToEndAsync();
        Task reading = ReadLinesAsync(launcher.StandardError, stderr);

        await WaitForAsync(() => Count(stderr, "dynamo: still building (") >= 2, stderr);
        string during = Snapshot(stderr);
        await File.WriteAllTextAsync(Path.Combine(_dir, "release"), "");
        await launcher.WaitForExitAsync();
        await reading;

        Assert.Equal(0, launcher.ExitCode);
        Assert.Contains("dynamo: building the CLI (Release; the first build takes about a minute", during, StringComparison.Ordinal);
        Assert.Contains("; built: Dynamo.Runtime)", during, StringComparison.Ordinal);
        Assert.Matches(@"dynamo: built in \d+ s", Snapshot(stderr));
        Assert.Equal($"cli {Path.Combine(_dir, "root", ".dynamo", "bin", "dynamo.dll")} run out=echo\n", await stdout);
        Assert.True(File.Exists(Path.Combine(_dir, "root", ".dynamo", "stamp")));
    }

    [Fact]
    public async Task FirstRun_BuildFails_ErrorsShownAndExit1()
    {
        using Process launcher = Start(fail: true);
        await File.WriteAllTextAsync(Path.Combine(_dir, "release"), "");
        string stdout = await launcher.StandardOutput.ReadToEndAsync();
        string stderr = await launcher.StandardError.ReadToEndAsync();
        await launcher.WaitForExitAsync();

        Assert.Equal(1, launcher.ExitCode);
        Assert.Contains("error CS1002", stderr, StringComparison.Ordinal);
        Assert.Contains("dynamo: build failed (log: .dynamo/build.log)", stderr, StringComparison.Ordinal);
        Assert.Equal("", stdout);
    }

    private Process Start(bool fail)
    {
        var start = new ProcessStartInfo(Path.Combine(_dir, "root", "dynamo")) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("run");
        start.ArgumentList.Add("out=echo");
        start.Environment["PATH"] = $"{Path.Combine(_dir, "bin")}:{Environment.GetEnvironmentVariable("PATH")}";
        start.Environment["FAKE_RELEASE"] = Path.Combine(_dir, "release");
        start.Environment["DYNAMO_BUILD_PROGRESS_SECONDS"] = "1";
        if (fail)
        {
            start.Environment["FAKE_FAIL"] = "1";
        }

        return Process.Start(start) ?? throw new InvalidOperationException("the launcher did not start");
    }

    private static async Task ReadLinesAsync(StreamReader reader, StringBuilder into)
    {
        while (await reader.ReadLineAsync() is string line)
        {
            lock (into)
            {
                into.AppendLine(line);
            }
        }
    }

    private static string Snapshot(StringBuilder text)
    {
        lock (text)
        {
            return text.ToString();
        }
    }

    private static int Count(StringBuilder text, string what)
    {
        string s = Snapshot(text);
        int n = 0;
        for (int i = s.IndexOf(what, StringComparison.Ordinal); i >= 0; i = s.IndexOf(what, i + 1, StringComparison.Ordinal))
        {
            n++;
        }

        return n;
    }

    private static async Task WaitForAsync(Func<bool> condition, StringBuilder output)
    {
        var until = DateTime.UtcNow.AddSeconds(60);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, $"not seen within 60 s:\n{Snapshot(output)}");
            await Task.Delay(20);
        }
    }
}

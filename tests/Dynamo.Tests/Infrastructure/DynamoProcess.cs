using System.Diagnostics;
using System.Text;

namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// A long-running <c>dynamo</c> child process (a worker, a bench server), optionally inside a network
/// namespace (<c>ip netns exec</c>), with its output captured line by line so a test can wait for a line.
/// Disposing kills it.
/// </summary>
public sealed class DynamoProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _stdout = new();
    private readonly Lock _lock = new();

    private DynamoProcess(Process process)
    {
        _process = process;
    }

    /// <summary>Everything written to stdout and stderr so far.</summary>
    public string Output
    {
        get
        {
            lock (_lock)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Only what was written to stdout so far.</summary>
    public string Stdout
    {
        get
        {
            lock (_lock)
            {
                return _stdout.ToString();
            }
        }
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Its stdin (<see cref="Start"/> with <c>input: true</c>), e.g. what a user types into `run in=text`.</summary>
    public StreamWriter Input => _process.StartInfo.RedirectStandardInput ? _process.StandardInput : throw new InvalidOperationException("started without input: true");

    /// <summary>Starts <c>dotnet dynamo.dll args</c> with <paramref name="environment"/> added (and its stdin open to <see cref="Input"/> with <paramref name="input"/>).</summary>
    public static DynamoProcess Start(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, string? netns = null, bool input = false) =>
        Launch("dotnet", [CliProcess.DllPath, .. args], environment, netns, workingDirectory: null, input);

    /// <summary>
    /// Runs <paramref name="script"/> with bash in <paramref name="workingDirectory"/>, as a user types a guide's commands
    /// in a terminal: <c>./dynamo</c> there is the repository's launcher, which runs this build of the CLI (DYNAMO_CLI).
    /// </summary>
    public static DynamoProcess StartShell(string script, string workingDirectory, IReadOnlyDictionary<string, string>? environment = null, string? netns = null)
    {
        var env = new Dictionary<string, string>(environment ?? new Dictionary<string, string>()) { ["DYNAMO_CLI"] = CliProcess.DllPath };
        return Launch("bash", ["-c", script], env, netns, workingDirectory, input: false);
    }

    /// <summary>
    /// Starts <paramref name="fileName"/> (e.g. an installed `dynamo`) in <paramref name="workingDirectory"/> with
    /// <paramref name="environment"/> added; NATS_SERVER and ETCD_ENDPOINTS are removed unless given there.
    /// </summary>
    public static DynamoProcess StartExecutable(string fileName, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null, bool input = false) =>
        Launch(fileName, args, environment, netns: null, workingDirectory, input);

    private static DynamoProcess Launch(string program, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment, string? netns, string? workingDirectory, bool input)
    {
        var start = new ProcessStartInfo(netns is null ? program : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = input,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? string.Empty,
        };
        if (netns is not null)
        {
            foreach (string a in new[] { "netns", "exec", netns, program })
            {
                start.ArgumentList.Add(a);
            }
        }

        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        start.Environment.Remove("NATS_SERVER");
        start.Environment.Remove("ETCD_ENDPOINTS");
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[k] = v;
        }

        var process = new Process { StartInfo = start };
        var p = new DynamoProcess(process);
        process.OutputDataReceived += (_, e) => p.Append(e.Data, stdout: true);
        process.ErrorDataReceived += (_, e) => p.Append(e.Data, stdout: false);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return p;
    }

    /// <summary>Waits until <see cref="Stdout"/> contains <paramref name="text"/> (read line by line: a prompt without its new line shows with the line it ends in).</summary>
    public async Task WaitForStdoutAsync(string text, double seconds = 60)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (!Stdout.Contains(text, StringComparison.Ordinal))
        {
            Assert.False(_process.HasExited, $"process exited before writing '{text}' on stdout:\n{Output}");
            Assert.True(DateTime.UtcNow < until, $"'{text}' not written on stdout within {seconds} s:\n{Output}");
            await Task.Delay(20);
        }
    }

    /// <summary>Waits until a line containing <paramref name="text"/> appears; fails with the output if the process exits or time runs out.</summary>
    public async Task WaitForLineAsync(string text, double seconds = 60)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                await Task.Delay(100);
                Assert.Fail($"process exited ({_process.ExitCode}) before printing '{text}':\n{Output}");
            }

            Assert.True(DateTime.UtcNow < until, $"'{text}' not printed within {seconds} s:\n{Output}");
            await Task.Delay(20);
        }
    }

    /// <summary>SIGKILL: what a crash looks like to the rest of the system.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>SIGTERM: a clean shutdown request.</summary>
    public void Terminate() => Signal("-TERM");

    /// <summary>SIGSTOP: the process freezes with its sockets open (a stuck process, a paused container).</summary>
    public void Freeze() => Signal("-STOP");

    /// <summary>SIGCONT: undoes <see cref="Freeze"/>.</summary>
    public void Thaw() => Signal("-CONT");

    /// <summary>
    /// SIGINT (Ctrl-C) to the processes a <see cref="StartShell"/> script runs (the shell's children), not to the shell,
    /// which ends when they do.
    /// </summary>
    public void InterruptChildren()
    {
        // bash may have exec'd a script's last command itself: then that command is this process.
        if (File.ReadAllText($"/proc/{_process.Id}/comm").Trim() != "bash")
        {
            Signal("-INT");
            return;
        }

        using Process children = Process.Start(new ProcessStartInfo("pgrep", ["-P", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { RedirectStandardOutput = true })!;
        string pids = children.StandardOutput.ReadToEnd();
        children.WaitForExit();
        foreach (string pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            Signal("-INT", int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture));
        }
    }

    /// <summary>Sends <paramref name="signal"/> (e.g. "-STOP") to any process, such as a rank a worker started.</summary>
    public static void Signal(string signal, int pid)
    {
        using Process kill = Process.Start("kill", [signal, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
    }

    private void Signal(string signal)
    {
        if (!_process.HasExited)
        {
            Signal(signal, _process.Id);
        }
    }

    public async Task<int> WaitForExitAsync(double seconds = 30)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        await _process.WaitForExitAsync(timeout.Token);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }

        _process.Dispose();
    }

    private void Append(string? line, bool stdout)
    {
        if (line is null)
        {
            return;
        }

        lock (_lock)
        {
            _output.AppendLine(line);
            if (stdout)
            {
                _stdout.AppendLine(line);
            }
        }
    }
}

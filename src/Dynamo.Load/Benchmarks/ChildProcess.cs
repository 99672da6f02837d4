using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// A process that a bench starts (a <c>dynamo worker</c>, nats-server, etcd), its stdout and stderr kept line by
/// line (the last <see cref="KeptLines"/>) so that the bench can wait for a line and quote the output when the
/// process fails. Disposing stops it by its own id: SIGTERM (a worker then leaves discovery and drains), SIGKILL
/// if it has not exited after <see cref="StopTimeout"/>.
/// </summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    /// <summary>Lines of output kept.</summary>
    public const int KeptLines = 5000;

    /// <summary>How long a stopped process has to exit before it is killed.</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(15);

    private readonly Process _process;
    private readonly Queue<string> _lines = new();
    private readonly Lock _lock = new();
    private readonly Task _exited;
    private TaskCompletionSource _lineAdded = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ChildProcess(string name, Process process)
    {
        Name = name;
        _process = process;
        _process.OutputDataReceived += (_, e) => Add(e.Data);
        _process.ErrorDataReceived += (_, e) => Add(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        _exited = _process.WaitForExitAsync();
    }

    /// <summary>What the bench calls it in messages ("prefill worker 1", "nats-server").</summary>
    public string Name { get; }

    public int Id => _process.Id;

    /// <summary>Starts <paramref name="fileName"/> with <paramref name="args"/>, the environment of this process plus <paramref name="environment"/>.</summary>
    /// <exception cref="FileNotFoundException"><paramref name="fileName"/> cannot be started.</exception>
    public static ChildProcess Start(string name, string fileName, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }

        foreach ((string key, string value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        try
        {
            return new ChildProcess(name, Process.Start(start) ?? throw new FileNotFoundException($"{fileName} did not start", fileName));
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new FileNotFoundException($"{name}: cannot start {fileName}: {e.Message}", fileName, e);
        }
    }

    /// <summary>The last <paramref name="count"/> lines of output, one per line.</summary>
    public string Tail(int count = 15)
    {
        lock (_lock)
        {
            return string.Join('\n', _lines.Skip(Math.Max(0, _lines.Count - count)));
        }
    }

    /// <summary>
    /// The first line of output so far or to come that matches <paramref name="pattern"/>. <see cref="IOException"/>
    /// (naming the process, quoting its last lines) when it exits first or nothing matches within <paramref name="timeout"/>.
    /// </summary>
    public async Task<Match> WaitForLineAsync(Regex pattern, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        while (true)
        {
            Task added;
            lock (_lock)
            {
                foreach (string line in _lines)
                {
                    Match m = pattern.Match(line);
                    if (m.Success)
                    {
                        return m;
                    }
                }

                added = _lineAdded.Task;
            }

            if (_exited.IsCompleted)
            {
                throw new IOException(Invariant($"{Name} (pid {Id}) exited with code {_process.ExitCode} before printing /{pattern}/; its last lines:\n{Tail()}"));
            }

            try
            {
                await Task.WhenAny(added, _exited).WaitAsync(deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new IOException(Invariant($"{Name} (pid {Id}) printed no line matching /{pattern}/ within {timeout.TotalSeconds:0} s; its last lines:\n{Tail()}"));
            }
        }
    }

    /// <summary>Whether it has exited.</summary>
    public bool HasExited => _exited.IsCompleted;

    /// <summary>Sends <paramref name="signal"/> (KILL, TERM, STOP, CONT) to the process, if it still runs.</summary>
    public async Task SignalAsync(string signal)
    {
        if (_exited.IsCompleted)
        {
            return;
        }

        using Process kill = Process.Start(new ProcessStartInfo("kill", [$"-{signal}", Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        await kill.WaitForExitAsync().ConfigureAwait(false);
    }

    /// <summary>Its exit code once it exited within <paramref name="timeout"/>; <see cref="TimeoutException"/> otherwise.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        await _exited.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        return _process.ExitCode;
    }

    /// <summary>SIGTERM, then SIGKILL if it has not exited after <see cref="StopTimeout"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_exited.IsCompleted)
        {
            try
            {
                using Process kill = Process.Start(new ProcessStartInfo("kill", ["-TERM", Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
                await kill.WaitForExitAsync().ConfigureAwait(false);
                await _exited.WaitAsync(StopTimeout).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or System.ComponentModel.Win32Exception or InvalidOperationException)
            {
                _process.Kill();
                await _exited.ConfigureAwait(false);
            }
        }

        _process.Dispose();
    }

    private void Add(string? line)
    {
        if (line is null)
        {
            return;
        }

        TaskCompletionSource added;
        lock (_lock)
        {
            _lines.Enqueue(line);
            if (_lines.Count > KeptLines)
            {
                _lines.Dequeue();
            }

            added = _lineAdded;
            _lineAdded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        added.TrySetResult();
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

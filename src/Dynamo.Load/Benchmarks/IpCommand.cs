using System.Diagnostics;
using System.Text;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// iproute2's <c>ip</c>, run to its end: what builds the network namespaces of <see cref="NetworkNamespace"/> (the
/// partition fault of <c>bench faults</c>) and of the multi-host tests. Needs Linux and root.
/// </summary>
internal static class IpCommand
{
    /// <summary>Why <c>ip</c> cannot build network namespaces here (not Linux, not root, not installed); null when it can.</summary>
    public static string? Unavailable() => Unavailable(OperatingSystem.IsLinux(), Environment.IsPrivilegedProcess, Find());

    /// <summary>The reason of <see cref="Unavailable()"/> for the given facts (tested without changing user).</summary>
    internal static string? Unavailable(bool linux, bool privileged, string? ip) =>
        !linux ? "network namespaces need Linux"
        : !privileged ? "network namespaces need root (this process is not privileged)"
        : ip is null ? "the ip command is not installed (apt-get install -y iproute2)"
        : null;

    /// <summary>The <c>ip</c> program: where it is installed, else the bare name.</summary>
    public static string FileName => Find() ?? "ip";

    /// <summary>Runs <c>ip ARGS</c> (split on spaces) and returns its output; <see cref="IOException"/> quoting it when ip fails.</summary>
    public static string Run(string args)
    {
        (int code, string output) = Execute(args);
        return code == 0 ? output : throw new IOException($"ip {args} failed ({code}): {output.Trim()}");
    }

    /// <summary>Runs <c>ip ARGS</c>; whether it succeeded (for cleanup, where what is gone already is fine).</summary>
    public static bool TryRun(string args) => Execute(args).Code == 0;

    private static (int Code, string Output) Execute(string args)
    {
        var start = new ProcessStartInfo(FileName) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string a in args.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            start.ArgumentList.Add(a);
        }

        using Process p = Process.Start(start) ?? throw new IOException("ip did not start (apt-get install -y iproute2)");
        var error = new StringBuilder();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                error.AppendLine(e.Data);
            }
        };
        p.BeginErrorReadLine();
        string output = p.StandardOutput.ReadToEnd();

        // Without a timeout this also waits for the last of stderr.
        p.WaitForExit();
        return (p.ExitCode, output + error);
    }

    private static string? Find() => LocalServers.Find("ip");
}

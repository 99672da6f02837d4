using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// A real single-node etcd for a test: free loopback ports (or <c>bindAddress</c> inside the network
/// namespace <c>netns</c>), its data dir on /dev/shm. Dispose kills it and deletes the data dir.
/// </summary>
public sealed class EtcdServer : IAsyncDisposable
{
    public const string InstallHint = "etcd is not installed: apt-get install -y etcd-server etcd-client";

    // A start-up deadline, not a bound on anything the product does: on a loaded 2-core machine (the whole
    // suite, builds beside it) etcd and each etcdctl probe can take seconds.
    private static readonly TimeSpan HealthyTimeout = TimeSpan.FromSeconds(30);

    private readonly string? _netns;
    private readonly string _bindAddress;
    private readonly Tls? _tls;
    private readonly bool _loopbackToo;
    private string? _rootPassword;
    private readonly string _name;
    private readonly StringBuilder _log = new();
    private Process? _process;

    private EtcdServer(string? netns, string bindAddress, int clientPort, int peerPort, Tls? tls, bool loopbackToo)
    {
        _tls = tls;
        _loopbackToo = loopbackToo;
        _netns = netns;
        _bindAddress = bindAddress;
        ClientPort = clientPort;
        PeerPort = peerPort;
        _name = "t" + Guid.NewGuid().ToString("N")[..12];
        DataDir = Path.Combine("/dev/shm", "dynamo-etcd-" + _name);
    }

    /// <summary>The client URL, "http://127.0.0.1:PORT" (https with TLS).</summary>
    public string Endpoint => string.Create(CultureInfo.InvariantCulture, $"{(_tls is null ? "http" : "https")}://{_bindAddress}:{ClientPort}");

    public int ClientPort { get; }

    public int PeerPort { get; }

    public string DataDir { get; }

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>What etcd wrote so far (for failure messages).</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>
    /// Starts etcd and waits until it answers (at most 10 s). Inside <paramref name="netns"/> (run via
    /// <c>ip netns exec</c>) the ports are given by the caller's <paramref name="clientPort"/> and
    /// <paramref name="peerPort"/> or default to 2379/2380; on the host they are free loopback ports.
    /// <paramref name="loopbackToo"/> listens for clients on 127.0.0.1 as well (the guides' `etcd --listen-client-urls
    /// http://HEAD:2379,http://127.0.0.1:2379`, as a container's published port is reached on the head node itself).
    /// </summary>
    public static async Task<EtcdServer> StartAsync(string? netns = null, string bindAddress = "127.0.0.1", int clientPort = 0, int peerPort = 0, Tls? tls = null, bool loopbackToo = false)
    {
        if (!OnPath("etcd") || !OnPath("etcdctl"))
        {
            Assert.Fail(InstallHint);
        }

        if (netns is null)
        {
            (clientPort, peerPort) = FreePorts(bindAddress, clientPort, peerPort);
        }
        else
        {
            clientPort = clientPort == 0 ? 2379 : clientPort;
            peerPort = peerPort == 0 ? 2380 : peerPort;
        }

        var server = new EtcdServer(netns, bindAddress, clientPort, peerPort, tls, loopbackToo);
        try
        {
            Directory.CreateDirectory(server.DataDir);
            await server.LaunchAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Turns on etcd's authentication: a root user (role root) with <paramref name="rootPassword"/>, then
    /// <c>auth enable</c>. From then on every call needs a user; <see cref="AddUserAsync"/> adds more.
    /// </summary>
    public async Task EnableAuthAsync(string rootPassword)
    {
        await EtcdctlAsync("user", "add", $"root:{rootPassword}");
        await EtcdctlAsync("user", "grant-role", "root", "root");
        await EtcdctlAsync("auth", "enable");
        _rootPassword = rootPassword;
    }

    /// <summary>Adds a user (after <see cref="EnableAuthAsync"/>), with no role: it may authenticate, but neither read nor write.</summary>
    public Task AddUserAsync(string name, string password) => EtcdctlAsync("user", "add", $"{name}:{password}");

    /// <summary>Runs etcdctl against this server (as root once authentication is on); fails the test when it fails.</summary>
    public async Task<string> EtcdctlAsync(params string[] args)
    {
        ProcessStartInfo start = Etcdctl(args);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using Process process = Process.Start(start) ?? throw new InvalidOperationException("etcdctl did not start");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"etcdctl {string.Join(' ', args)} failed: {await stderr}");
        return await stdout;
    }

    /// <summary>
    /// TLS of the client URL: etcd's <c>--cert-file</c>/<c>--key-file</c>; with <see cref="ClientCaFile"/>, also
    /// <c>--client-cert-auth</c> (clients must show a certificate that CA signed). <see cref="CaFile"/> is what
    /// etcdctl trusts; <see cref="ClientCertFile"/>/<see cref="ClientKeyFile"/> what it shows.
    /// </summary>
    public sealed record Tls(string CertFile, string KeyFile, string CaFile, string? ClientCaFile = null, string? ClientCertFile = null, string? ClientKeyFile = null);

    /// <summary>SIGKILL: the process dies at once, nothing is flushed or closed gracefully.</summary>
    public void Kill()
    {
        Process? process = _process;
        _process = null;
        if (process is null)
        {
            return;
        }

        try
        {
            if (!process.HasExited)
            {
                process.Kill();
            }

            process.WaitForExit(5000);
        }
        finally
        {
            process.Dispose();
        }
    }

    /// <summary>SIGSTOP: etcd freezes with its sockets open, so calls hang until their deadline (like a partition).</summary>
    public Task FreezeAsync() => SignalAsync("-STOP");

    /// <summary>SIGCONT: undoes <see cref="FreezeAsync"/>.</summary>
    public Task ThawAsync() => SignalAsync("-CONT");

    /// <summary>SIGTERM and wait (SIGKILL after 5 s).</summary>
    public async Task StopAsync()
    {
        Process? process = _process;
        if (process is null)
        {
            return;
        }

        if (!process.HasExited)
        {
            await SignalAsync("-CONT");
            await SignalAsync("-TERM");

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }

        Kill();
    }

    /// <summary>Stops etcd if it runs and starts it again on the same ports and data dir.</summary>
    public async Task RestartAsync()
    {
        await StopAsync();
        await LaunchAsync();
    }

    private async Task SignalAsync(string signal)
    {
        Process? process = _process;
        if (process is null || process.HasExited)
        {
            return;
        }

        using Process kill = Process.Start(new ProcessStartInfo("kill", [signal, process.Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("kill did not start");
        await kill.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        await Task.Yield();
        try
        {
            if (Directory.Exists(DataDir))
            {
                Directory.Delete(DataDir, recursive: true);
            }
        }
        catch (IOException)
        {
        }
    }

    private async Task LaunchAsync()
    {
        string client = Endpoint;
        string peer = string.Create(CultureInfo.InvariantCulture, $"http://{_bindAddress}:{PeerPort}");
        string[] etcdArgs =
        [
            "--name", _name, "--data-dir", DataDir,
            "--listen-client-urls", _loopbackToo ? string.Create(CultureInfo.InvariantCulture, $"{client},http://127.0.0.1:{ClientPort}") : client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", $"{_name}={peer}",
            "--log-level", "warn",
            .. _tls is null ? [] : (string[])["--cert-file", _tls.CertFile, "--key-file", _tls.KeyFile],
            .. _tls?.ClientCaFile is null ? [] : (string[])["--client-cert-auth", "--trusted-ca-file", _tls.ClientCaFile],
        ];
        ProcessStartInfo start = Command("etcd", etcdArgs);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            process.Dispose();
            Assert.Fail($"{InstallHint} ({e.Message})");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        await WaitHealthyAsync();
    }

    private async Task WaitHealthyAsync()
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < HealthyTimeout)
        {
            if (_process is null || _process.HasExited)
            {
                Assert.Fail($"etcd exited during start-up (exit {_process?.ExitCode}):\n{Log}");
            }

            ProcessStartInfo check = Etcdctl(["--command-timeout=3s", "endpoint", "health"]);
            check.RedirectStandardOutput = true;
            check.RedirectStandardError = true;
            using (Process probe = Process.Start(check) ?? throw new InvalidOperationException("etcdctl did not start"))
            {
                Task<string> stdout = probe.StandardOutput.ReadToEndAsync();
                Task<string> stderr = probe.StandardError.ReadToEndAsync();
                await probe.WaitForExitAsync();
                await Task.WhenAll(stdout, stderr);
                if (probe.ExitCode == 0)
                {
                    return;
                }
            }

            await Task.Delay(50);
        }

        Assert.Fail($"etcd at {Endpoint} not healthy after {HealthyTimeout.TotalSeconds} s:\n{Log}");
    }

    private ProcessStartInfo Etcdctl(string[] args)
    {
        string[] tls = _tls is null ? [] : ["--cacert", _tls.CaFile];
        string[] clientCert = _tls?.ClientCertFile is null ? [] : ["--cert", _tls.ClientCertFile, "--key", _tls.ClientKeyFile!];
        string[] user = _rootPassword is null ? [] : ["--user", $"root:{_rootPassword}"];
        ProcessStartInfo start = Command("etcdctl", ["--endpoints", Endpoint, .. tls, .. clientCert, .. user, .. args]);
        start.Environment["ETCDCTL_API"] = "3";
        return start;
    }

    private ProcessStartInfo Command(string program, string[] args)
    {
        ProcessStartInfo start = _netns is null
            ? new ProcessStartInfo(program, args)
            : new ProcessStartInfo("ip", ["netns", "exec", _netns, program, .. args]);
        start.UseShellExecute = false;
        return start;
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            if (_log.Length < 64 * 1024)
            {
                _log.AppendLine(line);
            }
        }
    }

    /// <summary>
    /// The client and peer ports: each as given, or a free one, never the same. The listeners are held open while the
    /// ports are read (picked one after the other, the system can hand out one port twice: nats-server's monitor and
    /// client port collided so in a CI run).
    /// </summary>
    private static (int Client, int Peer) FreePorts(string bindAddress, int clientPort, int peerPort)
    {
        using var first = new TcpListener(IPAddress.Parse(bindAddress), 0);
        using var second = new TcpListener(IPAddress.Parse(bindAddress), 0);
        using var third = new TcpListener(IPAddress.Parse(bindAddress), 0);
        first.Start();
        second.Start();
        third.Start();
        int[] free = [((IPEndPoint)first.LocalEndpoint).Port, ((IPEndPoint)second.LocalEndpoint).Port, ((IPEndPoint)third.LocalEndpoint).Port];
        int client = clientPort != 0 ? clientPort : free.First(p => p != peerPort);
        int peer = peerPort != 0 ? peerPort : free.First(p => p != client);
        return (client, peer);
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, program)));
}

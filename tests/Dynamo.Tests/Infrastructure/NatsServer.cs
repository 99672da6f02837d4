using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Dynamo.Tests.Infrastructure;

/// <summary>
/// A real nats-server for one test: a free port on the bind address, JetStream on in a unique /dev/shm
/// directory, a short ping interval (dead clients noticed in seconds), optionally inside a network
/// namespace (<c>ip netns exec NAME nats-server ...</c>). <see cref="Kill"/> is SIGKILL;
/// <see cref="RestartAsync"/> starts it again on the same ports; disposing kills it and deletes its files.
/// </summary>
public sealed class NatsServer : IAsyncDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(15);

    private readonly string _binary;
    private readonly string? _netns;
    private readonly string _directory;
    private Process? _process;

    private NatsServer(string binary, string? netns, string bindAddress, int port, int monitorPort, string directory)
    {
        _binary = binary;
        _netns = netns;
        BindAddress = bindAddress;
        Port = port;
        MonitorPort = monitorPort;
        _directory = directory;
    }

    public string BindAddress { get; }

    public int Port { get; }

    public int MonitorPort { get; }

    public string Url => $"nats://{BindAddress}:{Port}";

    public string LogPath => Path.Combine(_directory, "nats.log");

    /// <summary>Starts a server and waits (bounded) until it is ready; on <paramref name="port"/> when given (a client started before it knows where to look), else a free one.</summary>
    public static async Task<NatsServer> StartAsync(string? netns = null, string bindAddress = "127.0.0.1", string extraConfig = "", int port = 0)
    {
        string binary = FindBinary() ?? throw new InvalidOperationException("nats-server is not installed: apt-get install -y nats-server");
        string directory = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), $"dynamo-nats-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "nats.conf"), $"ping_interval: \"1s\"\nping_max: 2\n{extraConfig}\n");
        (int client, int monitor) = FreePorts(port);
        var server = new NatsServer(binary, netns, bindAddress, client, monitor, directory);
        try
        {
            await server.LaunchAsync();
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }

        return server;
    }

    /// <summary>SIGKILL, and waits for the process to exit.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            _process.WaitForExit(5000);
        }

        _process?.Dispose();
        _process = null;
    }

    /// <summary>Kills the server if it runs, then starts it again on the same ports and store.</summary>
    public async Task RestartAsync()
    {
        Kill();
        await LaunchAsync();
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }

        return ValueTask.CompletedTask;
    }

    private async Task LaunchAsync()
    {
        var start = new ProcessStartInfo { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        if (_netns is null)
        {
            start.FileName = _binary;
        }
        else
        {
            // `ip netns exec` execs the command, so the process id is the server's own.
            start.FileName = "ip";
            foreach (string a in new[] { "netns", "exec", _netns, _binary })
            {
                start.ArgumentList.Add(a);
            }
        }

        foreach (string a in new[]
        {
            "-c", Path.Combine(_directory, "nats.conf"), "-a", BindAddress, "-p", Port.ToString(), "-m", MonitorPort.ToString(),
            "-js", "-sd", Path.Combine(_directory, "store"), "-l", LogPath,
        })
        {
            start.ArgumentList.Add(a);
        }

        _process = Process.Start(start) ?? throw new InvalidOperationException($"{_binary} did not start");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var clock = Stopwatch.StartNew();
        while (!await IsReadyAsync())
        {
            if (_process.HasExited || clock.Elapsed > ReadyTimeout)
            {
                string log = File.Exists(LogPath) ? File.ReadAllText(LogPath) : "(no log)";
                string state = _process.HasExited ? $"exited with {_process.ExitCode}" : $"not ready after {ReadyTimeout.TotalSeconds} s";
                Kill();
                throw new InvalidOperationException($"nats-server on {Url} {state}. Log:\n{log}");
            }

            await Task.Delay(20);
        }
    }

    private async Task<bool> IsReadyAsync()
    {
        if (_netns is not null)
        {
            // The monitoring port is inside the namespace: probe from there.
            var probe = new ProcessStartInfo("ip") { UseShellExecute = false, RedirectStandardError = true };
            foreach (string a in new[] { "netns", "exec", _netns, "bash", "-c", $"exec 3<>/dev/tcp/{BindAddress}/{Port}" })
            {
                probe.ArgumentList.Add(a);
            }

            using Process p = Process.Start(probe)!;
            await p.WaitForExitAsync();
            return p.ExitCode == 0;
        }

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        try
        {
            using HttpResponseMessage response = await http.GetAsync($"http://{BindAddress}:{MonitorPort}/healthz");
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    /// <summary>
    /// The client port (<paramref name="port"/> when given, else a free one) and a different free monitor port. Both
    /// listeners are held open while the ports are read: picked one after the other, the system handed out the same
    /// port twice once (a CI run: the monitor took it, then the client port could not bind).
    /// </summary>
    private static (int Client, int Monitor) FreePorts(int port)
    {
        using var first = new TcpListener(IPAddress.Loopback, 0);
        using var second = new TcpListener(IPAddress.Loopback, 0);
        first.Start();
        second.Start();
        int a = ((IPEndPoint)first.LocalEndpoint).Port, b = ((IPEndPoint)second.LocalEndpoint).Port;
        return port == 0 ? (a, b) : (port, a != port ? a : b);
    }

    private static string? FindBinary()
    {
        IEnumerable<string> dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/usr/local/bin", "/usr/bin"]);
        return dirs.Select(d => Path.Combine(d, "nats-server")).FirstOrDefault(File.Exists);
    }
}

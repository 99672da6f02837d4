using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// NATS and etcd for a bench's worker processes: those named by NATS_SERVER and ETCD_ENDPOINTS when set, else a
/// nats-server and an etcd started here from the PATH on free loopback ports (etcd's data in a temporary folder,
/// removed at the end). <see cref="Description"/> says which, for the report. Disposing stops what was started.
/// </summary>
internal sealed partial class LocalServers : IAsyncDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    private readonly List<ChildProcess> _started = [];
    private string? _etcdDirectory;
    private Func<ChildProcess>? _startNats;
    private Func<ChildProcess>? _startEtcd;
    private ChildProcess? _nats;
    private ChildProcess? _etcd;

    private LocalServers()
    {
    }

    /// <summary>The NATS URL the workers and the frontend use.</summary>
    public string NatsUrl { get; private set; } = "";

    /// <summary>The etcd client URL the workers and the frontend use.</summary>
    public string EtcdEndpoint { get; private set; } = "";

    /// <summary>Where each came from: "NATS nats://... (NATS_SERVER)" or "NATS: nats-server started here on ..." and the same for etcd.</summary>
    public string Description { get; private set; } = "";

    /// <summary>
    /// Uses <paramref name="natsServer"/> and <paramref name="etcdEndpoints"/> when given (the variables' values),
    /// and starts whichever is missing, listening on <paramref name="host"/> (loopback unless a bench needs an
    /// address that a network namespace reaches). <see cref="FileNotFoundException"/> when a server to start is not installed.
    /// </summary>
    public static async Task<LocalServers> StartAsync(string? natsServer, string? etcdEndpoints, TextWriter log, string bench = "bench disagg", string host = "127.0.0.1", CancellationToken cancellationToken = default)
    {
        var servers = new LocalServers();
        try
        {
            var said = new List<string>();
            if (!string.IsNullOrWhiteSpace(natsServer))
            {
                servers.NatsUrl = natsServer.Trim();
                said.Add($"NATS {servers.NatsUrl} (NATS_SERVER)");
            }
            else
            {
                int port = FreePort();
                string binary = Find("nats-server") ?? throw new FileNotFoundException("NATS_SERVER is not set and nats-server is not installed (apt-get install -y nats-server): the worker processes need NATS", "nats-server");
                servers._startNats = () => ChildProcess.Start("nats-server", binary, ["-a", host, "-p", Invariant($"{port}")]);
                ChildProcess nats = servers._nats = servers.Add(servers._startNats());
                await nats.WaitForLineAsync(NatsReady(), ReadyTimeout, cancellationToken).ConfigureAwait(false);
                servers.NatsUrl = Invariant($"nats://{host}:{port}");
                said.Add($"NATS: {binary} started here on {servers.NatsUrl} (pid {nats.Id})");
            }

            if (!string.IsNullOrWhiteSpace(etcdEndpoints))
            {
                servers.EtcdEndpoint = etcdEndpoints.Trim();
                said.Add($"etcd {servers.EtcdEndpoint} (ETCD_ENDPOINTS)");
            }
            else
            {
                string binary = Find("etcd") ?? throw new FileNotFoundException("ETCD_ENDPOINTS is not set and etcd is not installed (apt-get install -y etcd-server): the worker processes need etcd", "etcd");
                string client = Invariant($"http://{host}:{FreePort()}"), peer = Invariant($"http://{host}:{FreePort()}");
                string name = $"bench{Guid.NewGuid():N}"[..16];
                servers._etcdDirectory = Path.Combine(Path.GetTempPath(), $"dynamo-{name}-etcd");
                string directory = servers._etcdDirectory;
                servers._startEtcd = () => ChildProcess.Start("etcd", binary,
                [
                    "--name", name, "--data-dir", directory,
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", $"{name}={peer}",
                    "--log-level", "info",
                ]);
                ChildProcess etcd = servers._etcd = servers.Add(servers._startEtcd());
                await etcd.WaitForLineAsync(EtcdReady(), ReadyTimeout, cancellationToken).ConfigureAwait(false);
                servers.EtcdEndpoint = client;
                said.Add($"etcd: {binary} started here on {client} (pid {etcd.Id})");
            }

            servers.Description = string.Join("; ", said);
            log.WriteLine($"{bench}: {servers.Description}");
            return servers;
        }
        catch
        {
            await servers.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Whether the nats-server was started here (so that it can be restarted).</summary>
    public bool CanRestartNats => _startNats is not null;

    /// <summary>Whether etcd was started here (so that it can be restarted).</summary>
    public bool CanRestartEtcd => _startEtcd is not null;

    /// <summary>Kills the nats-server started here (SIGKILL), waits <paramref name="downtime"/>, and starts it again on its port.</summary>
    public async Task RestartNatsAsync(TimeSpan downtime, CancellationToken cancellationToken = default) =>
        _nats = await RestartAsync(_nats!, _startNats!, NatsReady(), downtime, cancellationToken).ConfigureAwait(false);

    /// <summary>Kills the etcd started here (SIGKILL), waits <paramref name="downtime"/>, and starts it again on its data and ports.</summary>
    public async Task RestartEtcdAsync(TimeSpan downtime, CancellationToken cancellationToken = default) =>
        _etcd = await RestartAsync(_etcd!, _startEtcd!, EtcdReady(), downtime, cancellationToken).ConfigureAwait(false);

    private async Task<ChildProcess> RestartAsync(ChildProcess running, Func<ChildProcess> start, Regex ready, TimeSpan downtime, CancellationToken cancellationToken)
    {
        await running.SignalAsync("KILL").ConfigureAwait(false);
        await running.WaitForExitAsync(ReadyTimeout, cancellationToken).ConfigureAwait(false);
        await Task.Delay(downtime, cancellationToken).ConfigureAwait(false);
        ChildProcess next = Add(start());
        await next.WaitForLineAsync(ready, ReadyTimeout, cancellationToken).ConfigureAwait(false);
        return next;
    }

    /// <summary>The environment of a worker process: NATS_SERVER and ETCD_ENDPOINTS.</summary>
    public IReadOnlyDictionary<string, string> Environment => new Dictionary<string, string>
    {
        ["NATS_SERVER"] = NatsUrl,
        ["ETCD_ENDPOINTS"] = EtcdEndpoint,
    };

    public async ValueTask DisposeAsync()
    {
        for (int i = _started.Count - 1; i >= 0; i--)
        {
            await _started[i].DisposeAsync().ConfigureAwait(false);
        }

        if (_etcdDirectory is not null && Directory.Exists(_etcdDirectory))
        {
            Directory.Delete(_etcdDirectory, recursive: true);
        }
    }

    private ChildProcess Add(ChildProcess process)
    {
        _started.Add(process);
        return process;
    }

    /// <summary>A loopback port free now (for a process to listen on).</summary>
    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Where <paramref name="program"/> is installed: the PATH, then the usual folders; null when nowhere.</summary>
    internal static string? Find(string program) =>
        (System.Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/usr/local/bin", "/usr/bin", "/sbin"])
            .Select(d => Path.Combine(d, program))
            .FirstOrDefault(File.Exists);

    [GeneratedRegex("Server is ready")]
    private static partial Regex NatsReady();

    [GeneratedRegex("ready to serve client requests|serving client traffic insecurely")]
    private static partial Regex EtcdReady();

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

using System.Globalization;
using Microsoft.Extensions.Logging;

namespace Dynamo.Runtime.Discovery;

/// <summary>How <see cref="EtcdDiscovery"/> reaches etcd and keeps its lease.</summary>
public sealed record EtcdDiscoveryOptions
{
    /// <summary>The defaults, with etcd on <c>http://127.0.0.1:2379</c>.</summary>
    public static EtcdDiscoveryOptions Default { get; } = new();

    /// <summary>
    /// The etcd endpoints, each a normalised <c>http://host:port</c> or <c>https://host:port</c> (see
    /// <see cref="ParseEndpoints"/>); calls are balanced over all of them.
    /// </summary>
    public IReadOnlyList<string> Endpoints { get; init; } = ["http://127.0.0.1:2379"];

    /// <summary>TTL of the primary lease: how long after a process dies its leased keys disappear.</summary>
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long <see cref="EtcdDiscovery.StartAsync"/> keeps trying before it reports etcd unreachable.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The deadline of every single etcd call (put, get, keep-alive, revoke).</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Events a watch buffers for a slow consumer before it stops reading from etcd.</summary>
    public int WatchBufferCapacity { get; init; } = 1024;

    /// <summary>The clock of the keep-alive loop and backoffs (call time limits are real time); <see cref="TimeProvider.System"/> when null.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Where lease loss, restore and watch resyncs are reported; nothing is logged when null.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Credentials and TLS (ETCD_AUTH_*); <see cref="EtcdSecurity.None"/> by default.</summary>
    public EtcdSecurity Security { get; init; } = EtcdSecurity.None;

    /// <summary>What a value of ETCD_ENDPOINTS looks like, for error messages.</summary>
    internal const string Expected = "expected host:port, http://host:port or https://host:port, comma-separated";

    /// <summary>
    /// Parses the value of <c>ETCD_ENDPOINTS</c>: comma-separated <c>host:port</c>, <c>http://host:port</c>
    /// or <c>https://host:port</c> items (a bare host gets port 2379; a bare <c>host:port</c> gets https when
    /// <paramref name="defaultScheme"/> says so, as with ETCD_AUTH_CA set). Returns normalised
    /// <c>scheme://host:port</c> strings.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// An item is empty, names no valid host name or IP address (the guides' <c>&lt;your-etcd-endpoints-address&gt;</c>
    /// placeholder), has a bad port or an unknown scheme, or the schemes are mixed. The message names ETCD_ENDPOINTS,
    /// the item, and what was expected.
    /// </exception>
    public static IReadOnlyList<string> ParseEndpoints(string value, string defaultScheme = "http")
    {
        ArgumentNullException.ThrowIfNull(value);
        string[] items = value.Split(',');
        var endpoints = new List<string>(items.Length);
        string? scheme = null;
        foreach (string raw in items)
        {
            string item = raw.Trim();
            if (item.Length == 0)
            {
                throw Bad($"empty item in \"{value}\"");
            }

            string itemScheme = defaultScheme;
            string rest = item;
            int sep = item.IndexOf("://", StringComparison.Ordinal);
            if (sep >= 0)
            {
                itemScheme = item[..sep].ToLowerInvariant();
                rest = item[(sep + 3)..].TrimEnd('/');
                if (itemScheme is not ("http" or "https"))
                {
                    throw Bad($"unknown scheme \"{item[..sep]}\" in \"{item}\"");
                }
            }

            (string host, int port) = SplitHostPort(rest, item);
            if (scheme is not null && scheme != itemScheme)
            {
                throw Bad($"\"{item}\" mixes http and https endpoints");
            }

            scheme = itemScheme;
            endpoints.Add(string.Create(CultureInfo.InvariantCulture, $"{itemScheme}://{host}:{port}"));
        }

        return endpoints;
    }

    private static (string Host, int Port) SplitHostPort(string hostPort, string item)
    {
        string host;
        string? portText;
        if (hostPort.StartsWith('['))
        {
            int close = hostPort.IndexOf(']', StringComparison.Ordinal);
            if (close < 0)
            {
                throw Bad($"bad IPv6 address in \"{item}\"");
            }

            host = hostPort[..(close + 1)];
            string after = hostPort[(close + 1)..];
            portText = after.Length == 0 ? null : after.StartsWith(':') ? after[1..] : throw Bad($"bad address \"{item}\"");
        }
        else
        {
            int colon = hostPort.LastIndexOf(':');
            host = colon < 0 ? hostPort : hostPort[..colon];
            portText = colon < 0 ? null : hostPort[(colon + 1)..];
        }

        if (host.Length == 0 || host.Contains('/', StringComparison.Ordinal) || host.Contains(':', StringComparison.Ordinal) && !host.StartsWith('['))
        {
            throw Bad($"bad host in \"{item}\"");
        }

        // What the gRPC channel will parse (an unparseable host used to crash the process there).
        if (!Uri.TryCreate($"http://{host}:2379", UriKind.Absolute, out Uri? parsed) || !string.Equals(parsed.Host, host, StringComparison.OrdinalIgnoreCase))
        {
            throw Bad(host == item ? $"\"{item}\" is not a host name or IP address" : $"\"{host}\" in \"{item}\" is not a host name or IP address");
        }

        if (portText is null)
        {
            return (host, 2379);
        }

        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            throw Bad($"bad port \"{portText}\" in \"{item}\" (1-65535)");
        }

        return (host, port);
    }

    private static ArgumentException Bad(string problem) => new($"ETCD_ENDPOINTS: {problem}; {Expected}", "value");
}

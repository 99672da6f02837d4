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

    /// <summary>
    /// Parses the value of <c>ETCD_ENDPOINTS</c>: comma-separated <c>host:port</c>, <c>http://host:port</c>
    /// or <c>https://host:port</c> items (a bare host gets port 2379). Returns normalised
    /// <c>scheme://host:port</c> strings.
    /// </summary>
    /// <exception cref="ArgumentException">An item is empty, has a bad port or an unknown scheme, or the schemes are mixed.</exception>
    public static IReadOnlyList<string> ParseEndpoints(string value)
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
                throw new ArgumentException($"ETCD_ENDPOINTS: empty item in \"{value}\"", nameof(value));
            }

            string itemScheme = "http";
            string rest = item;
            int sep = item.IndexOf("://", StringComparison.Ordinal);
            if (sep >= 0)
            {
                itemScheme = item[..sep].ToLowerInvariant();
                rest = item[(sep + 3)..].TrimEnd('/');
                if (itemScheme is not ("http" or "https"))
                {
                    throw new ArgumentException($"ETCD_ENDPOINTS: unknown scheme \"{item[..sep]}\" in \"{item}\" (use host:port, http://host:port or https://host:port)", nameof(value));
                }
            }

            (string host, int port) = SplitHostPort(rest, item);
            if (scheme is not null && scheme != itemScheme)
            {
                throw new ArgumentException($"ETCD_ENDPOINTS: \"{item}\" mixes http and https endpoints", nameof(value));
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
                throw new ArgumentException($"ETCD_ENDPOINTS: bad IPv6 address in \"{item}\"", "value");
            }

            host = hostPort[..(close + 1)];
            string after = hostPort[(close + 1)..];
            portText = after.Length == 0 ? null : after.StartsWith(':') ? after[1..] : throw new ArgumentException($"ETCD_ENDPOINTS: bad address \"{item}\"", "value");
        }
        else
        {
            int colon = hostPort.LastIndexOf(':');
            host = colon < 0 ? hostPort : hostPort[..colon];
            portText = colon < 0 ? null : hostPort[(colon + 1)..];
        }

        if (host.Length == 0 || host.Contains('/', StringComparison.Ordinal) || host.Contains(':', StringComparison.Ordinal) && !host.StartsWith('['))
        {
            throw new ArgumentException($"ETCD_ENDPOINTS: bad host in \"{item}\"", "value");
        }

        if (portText is null)
        {
            return (host, 2379);
        }

        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            throw new ArgumentException($"ETCD_ENDPOINTS: bad port \"{portText}\" in \"{item}\" (expected 1-65535)", "value");
        }

        return (host, port);
    }
}

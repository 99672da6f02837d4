using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Dynamo.Components.Parallel;

/// <summary>HOST:PORT of a rendezvous (<c>--dist-init-addr</c>), parsed and resolved.</summary>
internal readonly record struct InitEndpoint(string Host, int Port)
{
    /// <summary>Parses <c>HOST:PORT</c> or <c>[IPV6]:PORT</c>; <see cref="ArgumentException"/> naming the flag.</summary>
    public static InitEndpoint Parse(string address)
    {
        int colon = address.LastIndexOf(':');
        string host = colon > 0 ? address[..colon] : "";
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }

        if (host.Length == 0 || !int.TryParse(address.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            throw new ArgumentException($"--dist-init-addr: '{address}' is not HOST:PORT");
        }

        return new InitEndpoint(host, port);
    }

    /// <summary>The addresses HOST stands for (itself when it is an IP address), IPv4 first.</summary>
    public async Task<IPAddress[]> ResolveAsync(CancellationToken cancellationToken)
    {
        if (IPAddress.TryParse(Host, out IPAddress? ip))
        {
            return [ip];
        }

        IPAddress[] all = await Dns.GetHostAddressesAsync(Host, cancellationToken).ConfigureAwait(false);
        return [.. all.OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1)];
    }

    public override string ToString() => Host.Contains(':', StringComparison.Ordinal)
        ? string.Create(CultureInfo.InvariantCulture, $"[{Host}]:{Port}")
        : string.Create(CultureInfo.InvariantCulture, $"{Host}:{Port}");
}

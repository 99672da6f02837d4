using System.Globalization;
using System.Net;

namespace Dynamo.Cli;

/// <summary>How the startup lines say where a listener binds, and what opens it to other hosts.</summary>
internal static class Listeners
{
    /// <summary>
    /// <c>127.0.0.1:8000 (this host only; --http-host 0.0.0.0 accepts other hosts)</c>, <c>0.0.0.0:8000 (every
    /// interface)</c>, or <c>10.0.0.2:8000</c> for one interface.
    /// </summary>
    public static string Describe(string host, int port, string flag)
    {
        string endpoint = string.Create(CultureInfo.InvariantCulture, $"{(host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host)}:{port}");
        if (!IPAddress.TryParse(host, out IPAddress? address))
        {
            return endpoint;
        }

        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            return $"{endpoint} (every interface)";
        }

        return IPAddress.IsLoopback(address) ? $"{endpoint} (this host only; {flag} 0.0.0.0 accepts other hosts)" : endpoint;
    }
}

using System.Globalization;
using System.Text.RegularExpressions;

namespace Dynamo.Tests.Infrastructure;

/// <summary>Reads one sample from a Prometheus text exposition (a worker's or frontend's /metrics).</summary>
internal static class PrometheusText
{
    /// <summary>The value of the one sample of <paramref name="name"/> (0 when absent).</summary>
    public static double Value(string metrics, string name)
    {
        Match m = Regex.Match(metrics, $@"^{Regex.Escape(name)}(\{{[^}}]*\}})? (\S+)$", RegexOptions.Multiline);
        return m.Success ? double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) : 0;
    }

    /// <summary>GET http://127.0.0.1:<paramref name="port"/>/metrics and the value of <paramref name="name"/> in it.</summary>
    public static async Task<double> ScrapeAsync(int port, string name)
    {
        using var http = new HttpClient();
        return Value(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics"), name);
    }
}

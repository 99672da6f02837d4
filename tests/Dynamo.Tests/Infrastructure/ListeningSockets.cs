using System.Globalization;
using System.Net;

namespace Dynamo.Tests.Infrastructure;

/// <summary>The TCP sockets a process listens on, read from /proc (Linux): /proc/net/tcp{,6} matched to the process's file descriptors.</summary>
public static class ListeningSockets
{
    private const string Listen = "0A";

    public static IReadOnlyList<IPEndPoint> Of(int pid)
    {
        var inodes = new HashSet<string>(StringComparer.Ordinal);
        foreach (string fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith("socket:[", StringComparison.Ordinal))
                {
                    inodes.Add(target["socket:[".Length..^1]);
                }
            }
            catch (IOException)
            {
                // The descriptor closed meanwhile.
            }
        }

        var sockets = new List<IPEndPoint>();
        foreach (string table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            foreach (string line in File.ReadLines(table).Skip(1))
            {
                string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length > 9 && f[3] == Listen && inodes.Contains(f[9]))
                {
                    sockets.Add(Parse(f[1]));
                }
            }
        }

        return sockets;
    }

    /// <summary>"0100007F:1F90" (IPv4) or 32 hex digits (IPv6), each 32-bit word in host (little-endian) order.</summary>
    private static IPEndPoint Parse(string local)
    {
        string[] parts = local.Split(':');
        byte[] raw = Convert.FromHexString(parts[0]);
        for (int word = 0; word < raw.Length; word += 4)
        {
            Array.Reverse(raw, word, 4);
        }

        return new IPEndPoint(new IPAddress(raw), int.Parse(parts[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
    }
}

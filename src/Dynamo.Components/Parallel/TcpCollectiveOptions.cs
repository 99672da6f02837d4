using System.Globalization;

namespace Dynamo.Components.Parallel;

/// <summary>Who a rank is and what it must agree on with the others (<see cref="TcpCollectiveGroup.JoinAsync"/>).</summary>
public sealed record TcpCollectiveOptions
{
    /// <summary>This rank, 0 .. <see cref="Size"/> - 1.</summary>
    public required int Rank { get; init; }

    public required int Size { get; init; }

    /// <summary>HOST:PORT where rank 0 listens and the others connect (--dist-init-addr).</summary>
    public required string InitAddress { get; init; }

    /// <summary>The model's fingerprint: every rank must load the same weights.</summary>
    public string Fingerprint { get; init; } = "";

    /// <summary>The shard layout in words: every rank must split the model the same way.</summary>
    public string Layout { get; init; } = "";

    /// <summary>How long ranks wait for each other to meet (--dist-timeout).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// How long a peer may stay silent inside a collective before it counts as lost (--rank-timeout). Rank 0 sends a
    /// plan at least every second while idle, and within a pass a rank waits only for the others' share of one layer.
    /// </summary>
    public TimeSpan RankTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a receive polls for data before it blocks (0: block at once).</summary>
    public double SpinMicroseconds { get; init; } = 50;

    /// <summary>Throws <see cref="ArgumentException"/> naming what is wrong.</summary>
    public TcpCollectiveOptions Validate()
    {
        if (Size < 1 || Rank < 0 || Rank >= Size)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"rank {Rank} is not a rank of a group of {Size}"));
        }

        int colon = InitAddress.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(InitAddress.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            throw new ArgumentException($"--dist-init-addr: '{InitAddress}' is not HOST:PORT");
        }

        if (Timeout <= TimeSpan.Zero || Timeout.TotalMilliseconds > int.MaxValue)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--dist-timeout: {Timeout.TotalSeconds} s is out of range"));
        }

        if (RankTimeout < TimeSpan.FromSeconds(2) || RankTimeout.TotalMilliseconds > int.MaxValue)
        {
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"--rank-timeout: {RankTimeout.TotalSeconds} s is out of range (at least 2 s: rank 0 speaks every second)"));
        }

        return this;
    }
}

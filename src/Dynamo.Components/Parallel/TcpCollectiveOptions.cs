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

    /// <summary>How long ranks wait for each other to meet, and how long a silent peer is given before it counts as lost.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);

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

        return this;
    }
}

using System.Net;

namespace Dynamo.Components.KvTransfer;

/// <summary>Settings of a <see cref="KvTransferServer"/>; tests write <c>KvTransferServerOptions.Default with { ... }</c>.</summary>
public sealed record KvTransferServerOptions
{
    /// <summary>The defaults.</summary>
    public static KvTransferServerOptions Default { get; } = new();

    /// <summary>
    /// The address to listen on: an IP address; <c>127.0.0.1</c> (this host only) by default, <c>0.0.0.0</c> for every
    /// IPv4 interface, <c>::</c> for IPv6 and IPv4. Senders on other hosts need one of the last two or a specific address.
    /// </summary>
    public string BindAddress { get; init; } = "127.0.0.1";

    /// <summary>The port to listen on; 0 picks a free one (see <see cref="KvTransferServer.Address"/>).</summary>
    public int Port { get; init; }

    /// <summary>
    /// The host senders should connect to, as advertised in <see cref="KvTransferServer.Address"/>. When null: the
    /// bind address if it is a specific one, else the local address this host uses to reach
    /// <see cref="AdvertiseToward"/>, else 127.0.0.1.
    /// </summary>
    public string? AdvertisedHost { get; init; }

    /// <summary>
    /// An endpoint the senders can reach too, typically the NATS server (<c>nats://10.0.0.1:4222</c>,
    /// <c>host:port</c>, or a comma-separated list of which the first counts): the advertised host is the local
    /// address of the interface this host's routes use toward it. Ignored when <see cref="AdvertisedHost"/> is
    /// set or the bind address is a specific one.
    /// </summary>
    public string? AdvertiseToward { get; init; }

    /// <summary>
    /// Kernel send and receive buffers of every connection, in bytes; 0 leaves them to the kernel (Linux then
    /// tunes them itself, up to <c>net.ipv4.tcp_rmem</c>). The kernel caps a set value at <c>net.core.rmem_max</c>.
    /// </summary>
    public int SocketBufferBytes { get; init; }

    /// <summary>
    /// The longest a connection may go without progress: its header must arrive within it, then each read of its
    /// data. A sender that stalls longer fails its transfer (<see cref="KvTransferError.TimedOut"/>).
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a ticket waits for its payload when <see cref="KvTransferServer.Expect"/> is given no timeout: past it,
    /// <see cref="KvTransferTicket.Received"/> faults (<see cref="KvTransferError.TimedOut"/>) and a later sender is refused.
    /// </summary>
    public TimeSpan ExpectTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Receive into arrays rented from <see cref="System.Buffers.ArrayPool{T}.Shared"/> instead of a fresh array per
    /// transfer: a payload's data is then a slice of a pooled array that belongs to its ticket, valid until
    /// <see cref="KvTransferTicket.Dispose"/>, which returns it (a ticket never disposed leaves it to the GC). Fresh
    /// memory costs page faults as the data lands in it (docs/benchmarks.md, "KV transfer"); reused memory does not.
    /// Off by default: with it, a ticket must outlive every use of its payload.
    /// </summary>
    public bool PoolBuffers { get; init; }

    /// <summary>Connections served at once; one more is closed at once (and counted as refused).</summary>
    public int MaxConnections { get; init; } = 256;

    /// <summary>
    /// The largest payload accepted, in bytes (at most <see cref="Array.MaxLength"/>: the data is one array); for a
    /// transfer in parts, the largest whole the parts may make up.
    /// </summary>
    public long MaxPayloadBytes { get; init; } = Array.MaxLength;

    /// <summary>The clock of the timeouts and the transfer times; <see cref="System.TimeProvider.System"/> when null.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public KvTransferServerOptions Validate()
    {
        if (!IPAddress.TryParse(BindAddress, out _))
        {
            throw new ArgumentException($"the KV transfer bind address must be an IP address (got '{BindAddress}')");
        }

        if (Port is < 0 or > 65535)
        {
            throw new ArgumentException($"the KV transfer port must be 0 to 65535 (got {Port})");
        }

        if (AdvertisedHost is { Length: 0 })
        {
            throw new ArgumentException("the KV transfer advertised host must not be empty");
        }

        if (SocketBufferBytes < 0)
        {
            throw new ArgumentException($"the KV transfer socket buffer size must be 0 (the kernel's) or positive (got {SocketBufferBytes})");
        }

        if (IdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException($"the KV transfer idle timeout must be positive (got {IdleTimeout})");
        }

        if (ExpectTimeout <= TimeSpan.Zero && ExpectTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentException($"the KV transfer expect timeout must be positive or infinite (got {ExpectTimeout})");
        }

        if (MaxConnections < 1)
        {
            throw new ArgumentException($"the KV transfer server must serve at least 1 connection (got {MaxConnections})");
        }

        if (MaxPayloadBytes < 0 || MaxPayloadBytes > Array.MaxLength)
        {
            throw new ArgumentException($"the largest KV transfer payload must be 0 to {Array.MaxLength} bytes (got {MaxPayloadBytes})");
        }

        return this;
    }
}

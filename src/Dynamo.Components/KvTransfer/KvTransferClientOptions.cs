namespace Dynamo.Components.KvTransfer;

/// <summary>Settings of a <see cref="KvTransferClient"/>; tests write <c>KvTransferClientOptions.Default with { ... }</c>.</summary>
public sealed record KvTransferClientOptions
{
    /// <summary>The defaults.</summary>
    public static KvTransferClientOptions Default { get; } = new();

    /// <summary>How long a connection may take to open; past it the send fails (<see cref="KvTransferError.Unreachable"/>).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// The longest the sender waits without progress: for each reply of the receiver, and for the socket to take
    /// each chunk of the data. Past it the send fails (<see cref="KvTransferError.TimedOut"/>).
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Kernel send and receive buffers, in bytes; 0 leaves them to the kernel (see <see cref="KvTransferServerOptions.SocketBufferBytes"/>).</summary>
    public int SocketBufferBytes { get; init; }

    /// <summary>The clock of the timeouts and of <see cref="KvTransferSendResult.Elapsed"/>; <see cref="System.TimeProvider.System"/> when null.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public KvTransferClientOptions Validate()
    {
        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException($"the KV transfer connect timeout must be positive (got {ConnectTimeout})");
        }

        if (IdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException($"the KV transfer idle timeout must be positive (got {IdleTimeout})");
        }

        if (SocketBufferBytes < 0)
        {
            throw new ArgumentException($"the KV transfer socket buffer size must be 0 (the kernel's) or positive (got {SocketBufferBytes})");
        }

        return this;
    }
}

namespace Dynamo.Components.Parallel;

/// <summary>Settings of a network collective group; tests write <c>CollectiveGroupOptions.Default with { ... }</c>.</summary>
public sealed record CollectiveGroupOptions
{
    /// <summary>The defaults.</summary>
    public static CollectiveGroupOptions Default { get; } = new();

    /// <summary>Shared memory among the ranks of a host and TCP between hosts, or TCP everywhere.</summary>
    public CollectiveTransport Transport { get; init; } = CollectiveTransport.Auto;

    /// <summary>
    /// How long the rendezvous may take: a rank other than 0 retries connecting to rank 0 and waits for its answer up
    /// to this long; rank 0 waits this long for every rank to join.
    /// </summary>
    public TimeSpan StartTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// How long a collective may wait for another rank's part (a long prefill on that rank takes seconds). A rank silent
    /// for longer is taken as stalled: the operation throws naming it and the group is broken. A rank that is gone
    /// (its connections closed) is noticed at once, not after this.
    /// </summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a rank waiting on a local peer's shared-memory slot spins (yielding now and then) before it sleeps on
    /// the peer's socket until the peer rings: spinning answers in about a microsecond, a ring costs a wake-up
    /// (tens of microseconds on a busy host). Zero sleeps at once.
    /// </summary>
    public TimeSpan SpinTime { get; init; } = TimeSpan.FromMicroseconds(100);

    /// <summary>Kernel send and receive buffers of each TCP connection, in bytes (Linux caps them at net.core.wmem_max/rmem_max).</summary>
    public int SocketBufferBytes { get; init; } = 4 << 20;

    /// <summary>
    /// Messages over this many bytes move in pieces of it, one after the other; it is also the size of each rank's
    /// two shared-memory slots.
    /// </summary>
    public int PieceBytes { get; init; } = 1 << 20;

    /// <summary>
    /// All-reduces up to this many bytes (per piece) go in one exchange, every rank summing every contribution; larger
    /// ones as a reduce-scatter (each rank sums its chunk) and an all-gather.
    /// </summary>
    public int SmallMessageBytes { get; init; } = 64 << 10;

    /// <summary>
    /// Which host this rank runs on: ranks with the same id share memory when <see cref="Transport"/> is Auto. Null:
    /// this machine's boot id and host name.
    /// </summary>
    public string? HostId { get; init; }

    /// <summary>Where the shared-memory file of a host's ranks is created (a tmpfs); it is removed once every local rank has mapped it.</summary>
    public string SharedMemoryDirectory { get; init; } = "/dev/shm";

    /// <summary>The transport by its flag name: <c>auto</c> (or <c>shm</c>) or <c>tcp</c>; <see cref="ArgumentException"/> naming the flag otherwise.</summary>
    public static CollectiveTransport ParseTransport(string name) => name.ToLowerInvariant() switch
    {
        "auto" or "shm" => CollectiveTransport.Auto,
        "tcp" => CollectiveTransport.Tcp,
        _ => throw new ArgumentException($"--collectives-transport: '{name}' is not one of auto, shm, tcp"),
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad setting.</summary>
    public CollectiveGroupOptions Validate()
    {
        if (StartTimeout <= TimeSpan.Zero || OperationTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("the collectives' start and operation timeouts must be positive");
        }

        if (SpinTime < TimeSpan.Zero)
        {
            throw new ArgumentException($"the collectives' spin time must be at least 0 (got {SpinTime})");
        }

        if (SocketBufferBytes < 0)
        {
            throw new ArgumentException($"the collectives' socket buffer size must be at least 0 (got {SocketBufferBytes})");
        }

        if (PieceBytes < 4096 || PieceBytes % 64 != 0)
        {
            throw new ArgumentException($"the collectives' piece size must be a multiple of 64 bytes, at least 4096 (got {PieceBytes})");
        }

        if (SmallMessageBytes < 0)
        {
            throw new ArgumentException($"the collectives' small-message bound must be at least 0 (got {SmallMessageBytes})");
        }

        return this;
    }
}

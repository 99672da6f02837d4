namespace Dynamo.Runtime.EventPlane;

/// <summary>
/// Buffering and limits of <see cref="InProcessEventPlane"/>; the defaults are those of the NATS event plane
/// (<see cref="RequestPlane.NatsPlaneOptions.EventBufferCapacity"/> and the NATS server's max_payload), so that a
/// slow subscriber in single-machine mode loses what it would lose between machines.
/// </summary>
public sealed record InProcessEventPlaneOptions
{
    /// <summary>The defaults.</summary>
    public static InProcessEventPlaneOptions Default { get; } = new();

    /// <summary>Messages buffered per subscription; beyond it the oldest are dropped and counted.</summary>
    public int BufferCapacity { get; init; } = 4096;

    /// <summary>The largest payload in bytes (1 MiB, the NATS server's default max_payload); a larger one is refused.</summary>
    public int MaxPayload { get; init; } = 1024 * 1024;

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting when one is out of range.</summary>
    public void Validate()
    {
        if (BufferCapacity < 1)
        {
            throw new ArgumentException($"{nameof(BufferCapacity)} must be at least 1 (got {BufferCapacity})");
        }

        if (MaxPayload < 1)
        {
            throw new ArgumentException($"{nameof(MaxPayload)} must be at least 1 (got {MaxPayload})");
        }
    }
}

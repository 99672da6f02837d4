namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// Flow control of <see cref="InProcessRequestPlane"/>; the defaults are those of the NATS plane
/// (<see cref="NatsPlaneOptions"/> and the NATS server's max_payload), so that single-machine mode accepts,
/// buffers and gives up exactly where a deployment between machines would.
/// </summary>
public sealed record InProcessRequestPlaneOptions
{
    /// <summary>The defaults.</summary>
    public static InProcessRequestPlaneOptions Default { get; } = new();

    /// <summary>Responses a handler may run ahead of its consumer (<see cref="NatsPlaneOptions.ResponseWindow"/>).</summary>
    public int ResponseWindow { get; init; } = 128;

    /// <summary>
    /// A full window that the consumer does not take from for this long cancels the handler and ends the
    /// stream with <c>ack_timeout</c> (<see cref="NatsPlaneOptions.AckTimeout"/>).
    /// </summary>
    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The largest request or response in bytes; beyond it the stream fails with <c>payload_too_large</c>.
    /// 1 MiB, the NATS server's default max_payload.
    /// </summary>
    public int MaxPayload { get; init; } = 1024 * 1024;

    /// <summary>Throws <see cref="ArgumentException"/> naming the setting when one is out of range.</summary>
    public void Validate()
    {
        if (ResponseWindow < 1)
        {
            throw new ArgumentException($"{nameof(ResponseWindow)} must be at least 1 (got {ResponseWindow})");
        }

        if (AckTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{nameof(AckTimeout)} must be positive (got {AckTimeout})");
        }

        if (MaxPayload < 1)
        {
            throw new ArgumentException($"{nameof(MaxPayload)} must be at least 1 (got {MaxPayload})");
        }
    }
}

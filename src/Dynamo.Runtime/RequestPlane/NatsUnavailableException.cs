namespace Dynamo.Runtime.RequestPlane;

/// <summary>The NATS server could not be reached; the message names its address and NATS_SERVER.</summary>
public sealed class NatsUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NatsUnavailableException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }

    /// <summary>True when NATS did not answer at all (not started yet, a wrong address, a cut link), as opposed to refusing this
    /// client (credentials, TLS): waiting may help the first, never the second.</summary>
    public bool IsUnreachable { get; init; }
}

namespace Dynamo.Runtime.RequestPlane;

/// <summary>The NATS server could not be reached; the message names its address and NATS_SERVER.</summary>
public sealed class NatsUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NatsUnavailableException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}

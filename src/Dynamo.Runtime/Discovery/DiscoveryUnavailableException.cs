namespace Dynamo.Runtime.Discovery;

/// <summary>The discovery store could not be reached; the message names its address.</summary>
public sealed class DiscoveryUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DiscoveryUnavailableException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }

    /// <summary>True when etcd did not answer at all (not started yet, a wrong address, a cut link), as opposed to refusing this
    /// client (credentials, TLS): waiting may help the first, never the second.</summary>
    public bool IsUnreachable { get; init; }
}

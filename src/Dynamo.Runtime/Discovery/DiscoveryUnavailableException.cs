namespace Dynamo.Runtime.Discovery;

/// <summary>The discovery store could not be reached; the message names its address.</summary>
public sealed class DiscoveryUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DiscoveryUnavailableException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}

namespace Dynamo.Llm.Routing;

/// <summary>
/// The router cannot take the request now: every worker is saturated and the queue is full, or there is
/// no worker. A frontend answers 503 with <see cref="RetryAfter"/> as the Retry-After header.
/// </summary>
public sealed class RouterOverloadedException : Exception
{
    /// <summary>Creates the exception with the default retry delay of one second.</summary>
    public RouterOverloadedException()
        : this("the router is overloaded", TimeSpan.FromSeconds(1))
    {
    }

    /// <summary>Creates the exception with the default retry delay of one second.</summary>
    public RouterOverloadedException(string message)
        : this(message, TimeSpan.FromSeconds(1))
    {
    }

    /// <summary>Creates the exception with the default retry delay of one second.</summary>
    public RouterOverloadedException(string message, Exception innerException)
        : base(message, innerException)
    {
        RetryAfter = TimeSpan.FromSeconds(1);
    }

    /// <summary>Creates the exception.</summary>
    public RouterOverloadedException(string message, TimeSpan retryAfter)
        : base(message)
    {
        RetryAfter = retryAfter;
    }

    /// <summary>When the client should try again.</summary>
    public TimeSpan RetryAfter { get; }
}

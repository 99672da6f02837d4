namespace Dynamo.Llm.Routing;

/// <summary>
/// A router refused a request; <see cref="Reason"/> says why (a frontend answers <see cref="RouterRejection.QueueFull"/>
/// and <see cref="RouterRejection.NoWorker"/> with 503 and <see cref="RetryAfter"/>, <see cref="RouterRejection.InvalidRequest"/>
/// with 400). Callers branch on the reason, never on the message.
/// </summary>
public sealed class RouterRejectedException : Exception
{
    /// <summary>A rejection of <see cref="RouterRejection.QueueFull"/> with a retry delay of one second.</summary>
    public RouterRejectedException()
        : this(RouterRejection.QueueFull, "the router is overloaded", TimeSpan.FromSeconds(1))
    {
    }

    /// <summary>A rejection of <see cref="RouterRejection.QueueFull"/> with a retry delay of one second.</summary>
    public RouterRejectedException(string message)
        : this(RouterRejection.QueueFull, message, TimeSpan.FromSeconds(1))
    {
    }

    /// <summary>A rejection of <see cref="RouterRejection.QueueFull"/> with a retry delay of one second.</summary>
    public RouterRejectedException(string message, Exception innerException)
        : base(message, innerException)
    {
        Reason = RouterRejection.QueueFull;
        RetryAfter = TimeSpan.FromSeconds(1);
    }

    /// <summary>A rejection for <paramref name="reason"/>.</summary>
    public RouterRejectedException(RouterRejection reason, string message, TimeSpan retryAfter, string? parameter = null)
        : base(message)
    {
        Reason = reason;
        RetryAfter = retryAfter;
        Parameter = parameter;
    }

    /// <summary>Why the request was refused.</summary>
    public RouterRejection Reason { get; }

    /// <summary>When the client should try again (for 503s).</summary>
    public TimeSpan RetryAfter { get; }

    /// <summary>With <see cref="RouterRejection.InvalidRequest"/>: the setting at fault (e.g. "kv_overlap_score_weight").</summary>
    public string? Parameter { get; }
}

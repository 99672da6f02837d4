namespace Dynamo.Runtime.RequestPlane;

/// <summary>A request stream ended in error; see <see cref="Kind"/> and <see cref="Code"/>.</summary>
public sealed class RequestPlaneException : Exception
{
    /// <summary>Creates the exception.</summary>
    public RequestPlaneException(RequestErrorKind kind, string code, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Kind = kind;
        Code = code;
    }

    /// <summary>Which side failed and how.</summary>
    public RequestErrorKind Kind { get; }

    /// <summary>A short machine-readable code ("internal", "invalid_request", "no_responders", ...).</summary>
    public string Code { get; }

    /// <summary>Whether another instance may succeed where this one failed (the request never ran).</summary>
    public bool InstanceFailed => Kind is RequestErrorKind.NoResponders or RequestErrorKind.Unreachable;

    /// <summary>
    /// Whether the request may be issued again (to this or another instance, with the responses already
    /// received): the stream broke without the handler failing (nothing serves the subject, the server went
    /// away, responses were lost in transit, this process's request plane is down). False for a handler's own
    /// error, a passed deadline, and transport errors that would recur (payload too large, ack timeout).
    /// </summary>
    public bool Reissuable => Kind is RequestErrorKind.NoResponders or RequestErrorKind.Unreachable
        or RequestErrorKind.Interrupted or RequestErrorKind.Unavailable;
}

namespace Dynamo.Runtime.RequestPlane;

/// <summary>Why a request stream failed. Values are part of the wire contract (error frames carry the name).</summary>
public enum RequestErrorKind
{
    /// <summary>The handler failed (or rejected the payload); the message and code come from it.</summary>
    Remote = 0,

    /// <summary>Nothing serves the subject.</summary>
    NoResponders = 1,

    /// <summary>The server did not accept, or stopped answering (no frame within the idle timeout).</summary>
    Unreachable = 2,

    /// <summary>The request's deadline passed.</summary>
    DeadlineExceeded = 3,

    /// <summary>The transport itself failed (connection closed, payload too large) or gave up on a consumer that took nothing (ack timeout).</summary>
    Transport = 4,

    /// <summary>
    /// This process's request plane is not connected (NATS down or reconnecting) and did not come back within
    /// <c>NatsPlaneOptions.UnavailableTimeout</c>: not the instance's fault; retry later. Raised by the client,
    /// never sent on the wire.
    /// </summary>
    Unavailable = 5,

    /// <summary>
    /// The stream was cut in transit: responses were lost (a NATS restart) and could not be sent again. The
    /// handler may have run in part and is cancelled; re-issue the request. Raised by the client, never sent on the wire.
    /// </summary>
    Interrupted = 6,
}

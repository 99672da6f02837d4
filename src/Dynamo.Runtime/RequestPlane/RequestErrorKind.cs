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
}

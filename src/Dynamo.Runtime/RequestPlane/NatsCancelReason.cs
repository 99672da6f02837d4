namespace Dynamo.Runtime.RequestPlane;

/// <summary>Why a served request's token was cancelled (the first reason wins).</summary>
internal enum NatsCancelReason
{
    /// <summary>Not by a call to Cancel: the deadline timer.</summary>
    None = 0,

    /// <summary>The client sent a cancel control message.</summary>
    ClientCancelled = 1,

    /// <summary>The client's inbox is gone (a frame drew a "no responders" status; only for a client without keepalives).</summary>
    ClientGone = 2,

    /// <summary>The window stayed full for the whole ack timeout.</summary>
    AckTimeout = 3,

    /// <summary>The server is being disposed.</summary>
    Shutdown = 4,

    /// <summary>A client that promised keepalives sent no control message for the client-idle timeout (frozen or gone).</summary>
    ClientSilent = 5,
}

using System.Diagnostics;

namespace Dynamo.Runtime.RequestPlane;

/// <summary>What a handler knows about the request besides its payload.</summary>
/// <param name="RequestId">The client's request id (unique per client; used in logs and for cancellation).</param>
/// <param name="Deadline">When the client stops waiting, if it said so.</param>
public sealed record RequestContext(string RequestId, DateTimeOffset? Deadline)
{
    /// <summary>
    /// The client's span when it sent the request (W3C trace context: <c>traceparent</c> and <c>tracestate</c> over
    /// NATS, the caller's <see cref="Activity.Current"/> in one process); default when it had none. A handler starts
    /// its own spans under it, so that one request is one trace across processes.
    /// </summary>
    public ActivityContext TraceParent { get; init; }
}

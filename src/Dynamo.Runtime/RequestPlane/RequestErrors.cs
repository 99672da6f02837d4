namespace Dynamo.Runtime.RequestPlane;

/// <summary>The errors both request planes raise for the same reason, with one code and wording each.</summary>
internal static class RequestErrors
{
    public static RequestPlaneException NoResponders(string subject, string requestId) =>
        new(RequestErrorKind.NoResponders, "no_responders", $"nothing serves {subject} (request {requestId})");

    public static RequestPlaneException DeadlinePassed(string subject, string requestId) =>
        new(RequestErrorKind.DeadlineExceeded, "deadline_exceeded", $"request {requestId} to {subject} passed its deadline");

    public static RequestPlaneException ServerStopped(string subject) =>
        new(RequestErrorKind.Unreachable, "server_stopped", $"the server of {subject} stopped");

    public static RequestPlaneException AckTimeout(string subject, string requestId, TimeSpan ackTimeout, int window) =>
        new(RequestErrorKind.Transport, "ack_timeout", $"request {requestId} to {subject}: the client took no response for {ackTimeout.TotalSeconds:0.###} s with {window} waiting; the request was cancelled");
}

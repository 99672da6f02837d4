namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// Carries a request to the process serving a subject and its stream of responses back, in order,
/// ending with an explicit end or error. NATS between processes (<c>NatsRequestPlane</c>), channels in
/// one process (<c>InProcessRequestPlane</c>). Both honour the same contract (README.md, "Contract"):
/// <list type="bullet">
/// <item>the consumer's pace bounds the producer (a window of responses; a consumer that takes nothing for
/// the ack timeout with the window full loses the request with <c>ack_timeout</c>);</item>
/// <item>cancelling or abandoning the enumeration cancels the handler's token, without waiting for it;</item>
/// <item>a handler exception ends the stream with <see cref="RequestPlaneException"/> of kind
/// <see cref="RequestErrorKind.Remote"/> carrying its message; the serving side never crashes;</item>
/// <item>no server for the subject: <see cref="RequestErrorKind.NoResponders"/> at once; a deadline passed:
/// <see cref="RequestErrorKind.DeadlineExceeded"/>; payloads over 1 MiB: <c>payload_too_large</c>;</item>
/// <item>between processes only, a server that stops answering (killed, link cut):
/// <see cref="RequestErrorKind.Unreachable"/> after <see cref="RequestOptions.IdleTimeout"/> without any frame
/// (servers send heartbeats while busy).</item>
/// </list>
/// </summary>
public interface IRequestPlane : IAsyncDisposable
{
    /// <summary>"nats" or "inproc".</summary>
    string Name { get; }

    /// <summary>
    /// Whether requests go out now; while not, the reason and since when (the NATS connection is down and
    /// reconnecting). The in-process plane is always connected. A frontend's /health reports it.
    /// </summary>
    RequestPlaneHealth Health { get; }

    /// <summary>
    /// Serves <paramref name="subject"/> until the returned handle is disposed (in-flight handlers are
    /// cancelled then). With <paramref name="queueGroup"/>, several servers share the subject and each
    /// request goes to one of them.
    /// </summary>
    Task<IAsyncDisposable> ServeAsync(string subject, RequestHandler handler, string? queueGroup = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Sends <paramref name="payload"/> to <paramref name="subject"/> and streams the responses. Errors
    /// are thrown as <see cref="RequestPlaneException"/> from the enumeration.
    /// </summary>
    IAsyncEnumerable<ReadOnlyMemory<byte>> RequestStreamAsync(string subject, ReadOnlyMemory<byte> payload, RequestOptions options, CancellationToken cancellationToken = default);
}

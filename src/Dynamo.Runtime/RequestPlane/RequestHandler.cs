namespace Dynamo.Runtime.RequestPlane;

/// <summary>
/// Serves one request: yields its responses in order. The token is cancelled when the client cancels,
/// goes away, or the deadline passes. Throw <see cref="EndpointException"/> for an error with a code;
/// any other exception is reported to the client with its message and code "internal".
/// </summary>
public delegate IAsyncEnumerable<ReadOnlyMemory<byte>> RequestHandler(RequestContext context, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken);

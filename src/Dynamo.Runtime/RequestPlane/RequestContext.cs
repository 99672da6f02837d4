namespace Dynamo.Runtime.RequestPlane;

/// <summary>What a handler knows about the request besides its payload.</summary>
/// <param name="RequestId">The client's request id (unique per client; used in logs and for cancellation).</param>
/// <param name="Deadline">When the client stops waiting, if it said so.</param>
public sealed record RequestContext(string RequestId, DateTimeOffset? Deadline);

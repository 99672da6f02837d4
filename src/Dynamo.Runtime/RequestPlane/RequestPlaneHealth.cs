namespace Dynamo.Runtime.RequestPlane;

/// <summary>Whether a request plane can send requests now (what a /health endpoint reports about it).</summary>
public sealed record RequestPlaneHealth
{
    /// <summary>Connected: requests go out at once.</summary>
    public static RequestPlaneHealth Connected { get; } = new() { IsConnected = true };

    /// <summary>Whether requests go out at once. While false, a new request waits (bounded) for the connection and then fails with <see cref="RequestErrorKind.Unavailable"/>.</summary>
    public bool IsConnected { get; init; }

    /// <summary>When the connection was lost; null while connected.</summary>
    public DateTimeOffset? DisconnectedSince { get; init; }

    /// <summary>Why requests cannot go out, naming the server ("NATS at nats://host:4222: connection lost, reconnecting"); null while connected.</summary>
    public string? Reason { get; init; }
}

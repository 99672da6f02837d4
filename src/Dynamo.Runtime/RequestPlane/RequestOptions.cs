namespace Dynamo.Runtime.RequestPlane;

/// <summary>Per-request settings of <see cref="IRequestPlane.RequestStreamAsync"/>.</summary>
public sealed record RequestOptions
{
    /// <summary>Defaults: a fresh request id each time it is read through <see cref="WithNewId"/>.</summary>
    public static RequestOptions Default { get; } = new();

    /// <summary>The request id sent to the server (empty: one is generated).</summary>
    public string RequestId { get; init; } = "";

    /// <summary>Time from sending until the whole stream must be over; null for none.</summary>
    public TimeSpan? Deadline { get; init; }

    /// <summary>Longest wait for the server to acknowledge the request before it counts as unreachable.</summary>
    public TimeSpan AcceptTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Longest silence (no response, no heartbeat) once accepted before the server counts as unreachable.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A copy with a new random request id.</summary>
    public RequestOptions WithNewId() => this with { RequestId = Guid.NewGuid().ToString("N") };
}

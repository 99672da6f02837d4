using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Runtime;

/// <summary>Settings of an <see cref="EndpointClient"/>.</summary>
public sealed record EndpointClientOptions
{
    /// <summary>The defaults.</summary>
    public static EndpointClientOptions Default { get; } = new();

    /// <summary>
    /// How long an instance that failed a request (no responders, unreachable) stays out of routing.
    /// After that it is routed to again if discovery still lists it.
    /// </summary>
    public TimeSpan DownInterval { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Per-request settings (timeouts, deadline) used when a call does not give its own.</summary>
    public RequestOptions Request { get; init; } = RequestOptions.Default;
}

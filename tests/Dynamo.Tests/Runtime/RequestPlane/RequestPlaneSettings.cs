namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>Serving-side flow control a contract test asks of a twin (both planes' defaults unless set).</summary>
public sealed record RequestPlaneSettings
{
    public static RequestPlaneSettings Default { get; } = new();

    public int Window { get; init; } = 128;

    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

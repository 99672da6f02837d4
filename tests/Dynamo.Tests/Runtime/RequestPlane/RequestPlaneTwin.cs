using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>One kind of request plane as the contract tests see it: a serving side and a calling side.</summary>
public abstract class RequestPlaneTwin : TestTwin
{
    /// <summary>The largest payload either plane carries by default (the NATS server's max_payload).</summary>
    public const int MaxPayload = 1024 * 1024;

    /// <summary>A serving plane and a calling plane (the same one in one process; two connections over NATS).</summary>
    public abstract Task<(IRequestPlane Server, IRequestPlane Client)> PlanesAsync(RequestPlaneSettings settings);

    /// <summary>Requests the serving handle <paramref name="serving"/> is running now.</summary>
    public abstract int ActiveCount(IAsyncDisposable serving);
}

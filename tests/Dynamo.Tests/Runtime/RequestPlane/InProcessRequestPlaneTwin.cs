using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>The in-process plane: one plane, made by the first call, serves and calls (one process).</summary>
public sealed class InProcessRequestPlaneTwin : RequestPlaneTwin
{
    private InProcessRequestPlane? _plane;

    public override Task<(IRequestPlane Server, IRequestPlane Client)> PlanesAsync(RequestPlaneSettings settings)
    {
        _plane ??= Own(new InProcessRequestPlane(InProcessRequestPlaneOptions.Default with { ResponseWindow = settings.Window, AckTimeout = settings.AckTimeout }));
        return Task.FromResult<(IRequestPlane, IRequestPlane)>((_plane, _plane));
    }

    public override int ActiveCount(IAsyncDisposable serving) => InProcessRequestPlane.ActiveCount(serving);
}

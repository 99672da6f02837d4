using Dynamo.Runtime.EventPlane;

namespace Dynamo.Tests.Runtime.EventPlane;

/// <summary>The in-process plane: every "process" publishes and subscribes on the one plane.</summary>
public sealed class InProcessEventPlaneTwin : EventPlaneTwin
{
    private readonly List<InProcessEventPlane> _planes = [];

    public override Task<IEventPlane[]> PlanesAsync(int count, int bufferCapacity = 4096)
    {
        var plane = new InProcessEventPlane(InProcessEventPlaneOptions.Default with { BufferCapacity = bufferCapacity });
        _planes.Add(plane);
        return Task.FromResult(Enumerable.Repeat<IEventPlane>(plane, count).ToArray());
    }

    public override async ValueTask DisposeAsync()
    {
        foreach (InProcessEventPlane plane in _planes)
        {
            await plane.DisposeAsync();
        }
    }
}

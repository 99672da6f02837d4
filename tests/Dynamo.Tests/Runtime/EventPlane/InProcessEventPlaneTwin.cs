using Dynamo.Runtime.EventPlane;

namespace Dynamo.Tests.Runtime.EventPlane;

/// <summary>The in-process plane: every "process" publishes and subscribes on the one plane.</summary>
public sealed class InProcessEventPlaneTwin : EventPlaneTwin
{
    public override Task<IEventPlane[]> PlanesAsync(int count, int bufferCapacity = 4096)
    {
        InProcessEventPlane plane = Own(new InProcessEventPlane(InProcessEventPlaneOptions.Default with { BufferCapacity = bufferCapacity }));
        return Task.FromResult(Enumerable.Repeat<IEventPlane>(plane, count).ToArray());
    }
}

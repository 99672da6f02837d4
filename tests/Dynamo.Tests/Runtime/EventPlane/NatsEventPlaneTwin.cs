using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Runtime.EventPlane;

/// <summary>The NATS plane against a real nats-server of its own, each plane on its own connection (a process).</summary>
public sealed class NatsEventPlaneTwin : EventPlaneTwin
{
    private NatsServer? _nats;

    public override async Task InitializeAsync() => _nats = Own(await NatsServer.StartAsync());

    public override async Task<IEventPlane[]> PlanesAsync(int count, int bufferCapacity = 4096)
    {
        var planes = new IEventPlane[count];
        for (int i = 0; i < count; i++)
        {
            planes[i] = Own(await NatsEventPlane.ConnectAsync(NatsPlaneOptions.Default with { Url = _nats!.Url, EventBufferCapacity = bufferCapacity }));
        }

        return planes;
    }
}

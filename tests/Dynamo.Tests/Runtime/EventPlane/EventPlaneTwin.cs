using Dynamo.Runtime.EventPlane;

namespace Dynamo.Tests.Runtime.EventPlane;

/// <summary>One kind of event plane as the contract tests see it: planes of several processes on one cluster.</summary>
public abstract class EventPlaneTwin : TestTwin
{
    /// <summary>The largest payload either plane carries by default (the NATS server's max_payload).</summary>
    public const int MaxPayload = 1024 * 1024;

    /// <summary>
    /// <paramref name="count"/> planes on one cluster, each subscription buffering <paramref name="bufferCapacity"/>
    /// messages (the same plane each time in one process; separate connections over NATS).
    /// </summary>
    public abstract Task<IEventPlane[]> PlanesAsync(int count, int bufferCapacity = 4096);
}

using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>
/// The NATS plane against a real nats-server of its own, serving and calling sides on separate connections
/// (two processes as far as NATS can tell). Heartbeats every 200 ms, so that a test may use a short idle timeout.
/// </summary>
public sealed class NatsRequestPlaneTwin : RequestPlaneTwin
{
    private NatsServer? _nats;

    public override async Task InitializeAsync() => _nats = Own(await NatsServer.StartAsync());

    public override async Task<(IRequestPlane Server, IRequestPlane Client)> PlanesAsync(RequestPlaneSettings settings)
    {
        var options = NatsPlaneOptions.Default with { Url = _nats!.Url, HeartbeatInterval = TimeSpan.FromMilliseconds(200) };
        NatsRequestPlane server = Own(await NatsRequestPlane.ConnectAsync(options with { ResponseWindow = settings.Window, AckTimeout = settings.AckTimeout }));
        NatsRequestPlane client = Own(await NatsRequestPlane.ConnectAsync(options));
        return (server, client);
    }

    public override int ActiveCount(IAsyncDisposable serving) => ((NatsRequestServer)serving).ActiveCount;
}

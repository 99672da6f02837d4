using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>
/// The NATS plane against a real nats-server of its own, serving and calling sides on separate connections
/// (two processes as far as NATS can tell). Heartbeats every 200 ms, so that a test may use a short idle timeout.
/// </summary>
public sealed class NatsRequestPlaneTwin : RequestPlaneTwin
{
    private readonly List<NatsRequestPlane> _planes = [];
    private NatsServer? _nats;

    public override async Task InitializeAsync() => _nats = await NatsServer.StartAsync();

    public override async Task<(IRequestPlane Server, IRequestPlane Client)> PlanesAsync(RequestPlaneSettings settings)
    {
        var options = NatsPlaneOptions.Default with { Url = _nats!.Url, HeartbeatInterval = TimeSpan.FromMilliseconds(200) };
        NatsRequestPlane server = await NatsRequestPlane.ConnectAsync(options with { ResponseWindow = settings.Window, AckTimeout = settings.AckTimeout });
        _planes.Add(server);
        NatsRequestPlane client = await NatsRequestPlane.ConnectAsync(options);
        _planes.Add(client);
        return (server, client);
    }

    public override int ActiveCount(IAsyncDisposable serving) => ((NatsRequestServer)serving).ActiveCount;

    public override async ValueTask DisposeAsync()
    {
        for (int i = _planes.Count - 1; i >= 0; i--)
        {
            await _planes[i].DisposeAsync();
        }

        if (_nats is not null)
        {
            await _nats.DisposeAsync();
        }
    }
}

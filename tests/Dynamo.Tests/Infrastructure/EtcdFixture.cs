namespace Dynamo.Tests.Infrastructure;

/// <summary>One etcd shared by the tests of a class that do not stop it (each test uses its own key prefix).</summary>
public sealed class EtcdFixture : IAsyncLifetime
{
    private EtcdServer? _server;

    public EtcdServer Server => _server ?? throw new InvalidOperationException("the etcd fixture did not start");

    public async Task InitializeAsync() => _server = await EtcdServer.StartAsync();

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

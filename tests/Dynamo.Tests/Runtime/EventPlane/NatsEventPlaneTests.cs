using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;
using NATS.Client.Core;

namespace Dynamo.Tests.Runtime.EventPlane;

/// <summary>What only the NATS event plane has; the contract both planes keep is in <see cref="EventPlaneContractTests"/>.</summary>
public sealed class NatsEventPlaneTests : IAsyncLifetime
{
    private NatsServer _nats = null!;

    public async Task InitializeAsync() => _nats = await NatsServer.StartAsync();

    public async Task DisposeAsync() => await _nats.DisposeAsync();

    [Fact]
    public async Task DisposeAsync_SharedConnection_EndsThePlanesSubscriptionsAndLeavesTheConnectionOpen()
    {
        NatsPlaneOptions options = NatsPlaneOptions.Default with { Url = _nats.Url };
        await using NatsConnection shared = await NatsConnectionFactory.ConnectAsync(options);
        var plane = new NatsEventPlane(shared, options, ownsConnection: false);
        IEventSubscription subscription = await plane.SubscribeAsync("x.>");
        Task reading = Task.Run(async () =>
        {
            await foreach (EventMessage m in subscription.ReadAllAsync())
            {
            }
        });

        await plane.DisposeAsync();

        await reading.WaitAsync(Eventually.Patience);
        Assert.Equal(NatsConnectionState.Open, shared.ConnectionState);
        await shared.PingAsync();
    }
}

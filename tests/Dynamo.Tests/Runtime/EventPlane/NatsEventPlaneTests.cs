using System.Diagnostics;
using System.Text;
using Dynamo.Runtime.EventPlane;
using Dynamo.Runtime.RequestPlane;
using Dynamo.Tests.Infrastructure;

namespace Dynamo.Tests.Runtime.EventPlane;

/// <summary>NatsEventPlane against a real nats-server, publisher and subscriber on separate connections.</summary>
public sealed class NatsEventPlaneTests : IAsyncLifetime
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);
    private readonly List<IAsyncDisposable> _cleanup = [];
    private NatsServer _nats = null!;

    public async Task InitializeAsync() => _nats = await NatsServer.StartAsync();

    public async Task DisposeAsync()
    {
        for (int i = _cleanup.Count - 1; i >= 0; i--)
        {
            await _cleanup[i].DisposeAsync();
        }

        await _nats.DisposeAsync();
    }

    [Fact]
    public async Task SubscribeAsync_Wildcard_ReceivesMatchingMessagesInOrder()
    {
        NatsEventPlane publisher = await PlaneAsync();
        NatsEventPlane subscriber = await PlaneAsync();
        await using IEventSubscription all = await subscriber.SubscribeAsync("kv.>");
        await using IEventSubscription oneToken = await subscriber.SubscribeAsync("kv.*.stored");

        for (int i = 0; i < 500; i++)
        {
            await publisher.PublishAsync($"kv.w{i % 3}.{(i % 2 == 0 ? "stored" : "removed")}", BitConverter.GetBytes(i));
        }

        await publisher.PublishAsync("other.w1.stored", BitConverter.GetBytes(-1));

        List<EventMessage> got = await TakeAsync(all, 500);
        Assert.Equal(Enumerable.Range(0, 500), got.Select(m => BitConverter.ToInt32(m.Payload.Span)));
        Assert.Equal("kv.w2.removed", got[5].Subject);
        List<EventMessage> stored = await TakeAsync(oneToken, 250);
        Assert.Equal(Enumerable.Range(0, 250).Select(i => 2 * i), stored.Select(m => BitConverter.ToInt32(m.Payload.Span)));
        Assert.Equal(0, all.Dropped);
    }

    [Fact]
    public async Task SubscribeAsync_SlowSubscriber_DropsOldestAndCountsThem()
    {
        NatsEventPlane publisher = await PlaneAsync();
        NatsEventPlane subscriber = await PlaneAsync(NatsPlaneOptions.Default with { EventBufferCapacity = 10 });
        await using IEventSubscription slow = await subscriber.SubscribeAsync("load.>");

        for (int i = 0; i < 100; i++)
        {
            await publisher.PublishAsync("load.w1", BitConverter.GetBytes(i));
        }

        await publisher.Connection.PingAsync();
        var clock = Stopwatch.StartNew();
        while (slow.Dropped < 90 && clock.Elapsed < Patience)
        {
            await Task.Delay(20);
        }

        Assert.Equal(90, slow.Dropped);
        List<EventMessage> kept = await TakeAsync(slow, 10);
        Assert.Equal(Enumerable.Range(90, 10), kept.Select(m => BitConverter.ToInt32(m.Payload.Span)));
    }

    [Fact]
    public async Task DisposeSubscription_ReadAllAsyncEnds()
    {
        NatsEventPlane plane = await PlaneAsync();
        IEventSubscription subscription = await plane.SubscribeAsync("x.y");
        await plane.PublishAsync("x.y", Encoding.UTF8.GetBytes("hello"));
        Task<List<string>> reading = Task.Run(async () =>
        {
            var seen = new List<string>();
            await foreach (EventMessage m in subscription.ReadAllAsync())
            {
                seen.Add(Encoding.UTF8.GetString(m.Payload.Span));
            }

            return seen;
        });
        await Task.Delay(200);

        await subscription.DisposeAsync();

        Assert.Equal(["hello"], await reading.WaitAsync(Patience));
    }

    private async Task<NatsEventPlane> PlaneAsync(NatsPlaneOptions? options = null)
    {
        NatsEventPlane plane = await NatsEventPlane.ConnectAsync((options ?? NatsPlaneOptions.Default) with { Url = _nats.Url });
        _cleanup.Add(plane);
        return plane;
    }

    private static async Task<List<EventMessage>> TakeAsync(IEventSubscription subscription, int count)
    {
        var got = new List<EventMessage>();
        using var timeout = new CancellationTokenSource(Patience);
        await foreach (EventMessage m in subscription.ReadAllAsync(timeout.Token))
        {
            got.Add(m);
            if (got.Count == count)
            {
                break;
            }
        }

        return got;
    }
}

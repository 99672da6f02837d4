using System.Text;
using Dynamo.Runtime.EventPlane;

namespace Dynamo.Tests.Runtime.EventPlane;

/// <summary>
/// The event-plane contract (IEventPlane, and src/Dynamo.Runtime/README.md, "Event plane"), run against the
/// in-process plane and the NATS plane alike; publishers and subscribers are separate processes as far as
/// the twin can make them. Everything waits for conditions.
/// </summary>
public abstract class EventPlaneContractTests(EventPlaneTwin twin) : TwinTests<EventPlaneTwin>(twin)
{
    [Fact]
    public async Task SubscribeAsync_Wildcard_ReceivesMatchingMessagesInOrder()
    {
        (IEventPlane publisher, IEventPlane subscriber) = Two(await Twin.PlanesAsync(2));
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

    [Theory]
    [InlineData("dyn.a", "dyn.a", true)]
    [InlineData("dyn.*", "dyn.a", true)]
    [InlineData("dyn.*", "dyn.a.b", false)]
    [InlineData("dyn.>", "dyn.a.b", true)]
    [InlineData("dyn.>", "dyn", false)]
    [InlineData("dyn.*.c", "dyn.b.c", true)]
    [InlineData("dyn.*.c", "dyn.b.c.d", false)]
    [InlineData("dyn.a", "dyn.ab", false)]
    [InlineData("*", "dyn", true)]
    [InlineData(">", "dyn.a.b", true)]
    [InlineData("dyn.a*", "dyn.ab", false)]
    public async Task SubscribeAsync_Pattern_ReceivesExactlyTheMatchingSubjects(string pattern, string subject, bool matches)
    {
        (IEventPlane publisher, IEventPlane subscriber) = Two(await Twin.PlanesAsync(2));
        await using IEventSubscription subscription = await subscriber.SubscribeAsync(pattern);

        // A publisher's messages arrive in order: whatever matched arrives before the sentinel, which matches.
        string sentinel = string.Join('.', pattern.Split('.').Select(t => t is "*" or ">" ? "s" : t));
        await publisher.PublishAsync(subject, "probe"u8.ToArray());
        await publisher.PublishAsync(sentinel, "sentinel"u8.ToArray());

        var seen = new List<string>();
        using var timeout = new CancellationTokenSource(Eventually.Patience);
        await foreach (EventMessage m in subscription.ReadAllAsync(timeout.Token))
        {
            seen.Add(Encoding.UTF8.GetString(m.Payload.Span));
            if (seen[^1] == "sentinel")
            {
                break;
            }
        }

        Assert.Equal(matches ? ["probe", "sentinel"] : ["sentinel"], seen);
    }

    [Fact]
    public async Task PublishAsync_SeveralPublishersAtOnce_EachOnesMessagesInOrder()
    {
        IEventPlane[] planes = await Twin.PlanesAsync(5);
        IEventPlane subscriber = planes[4];
        await using IEventSubscription all = await subscriber.SubscribeAsync("p.>");

        await Task.WhenAll(Enumerable.Range(0, 4).Select(p => Task.Run(async () =>
        {
            for (int i = 0; i < 200; i++)
            {
                await planes[p].PublishAsync($"p.{p}", BitConverter.GetBytes(i));
            }
        })));

        List<EventMessage> got = await TakeAsync(all, 800);
        for (int p = 0; p < 4; p++)
        {
            Assert.Equal(Enumerable.Range(0, 200), got.Where(m => m.Subject == $"p.{p}").Select(m => BitConverter.ToInt32(m.Payload.Span)));
        }
    }

    [Fact]
    public async Task SubscribeAsync_SlowSubscriber_DropsOldestAndCountsThem()
    {
        (IEventPlane publisher, IEventPlane subscriber) = Two(await Twin.PlanesAsync(2, bufferCapacity: 10));
        await using IEventSubscription slow = await subscriber.SubscribeAsync("load.>");

        for (int i = 0; i < 100; i++)
        {
            await publisher.PublishAsync("load.w1", BitConverter.GetBytes(i));
        }

        await Eventually.WaitUntilAsync(() => slow.Dropped >= 90, "90 drops counted");

        Assert.Equal(90, slow.Dropped);
        List<EventMessage> kept = await TakeAsync(slow, 10);
        Assert.Equal(Enumerable.Range(90, 10), kept.Select(m => BitConverter.ToInt32(m.Payload.Span)));
    }

    [Fact]
    public async Task PublishAsync_LargeAndEmptyPayloads_ArriveIntact()
    {
        (IEventPlane publisher, IEventPlane subscriber) = Two(await Twin.PlanesAsync(2));
        await using IEventSubscription subscription = await subscriber.SubscribeAsync("blob.*");
        byte[] large = new byte[EventPlaneTwin.MaxPayload / 2];
        new Random(3).NextBytes(large);

        await publisher.PublishAsync("blob.large", large);
        await publisher.PublishAsync("blob.empty", ReadOnlyMemory<byte>.Empty);

        List<EventMessage> got = await TakeAsync(subscription, 2);
        Assert.Equal(large, got[0].Payload.ToArray());
        Assert.Equal("blob.empty", got[1].Subject);
        Assert.Equal(0, got[1].Payload.Length);
    }

    [Fact]
    public async Task PublishAsync_PayloadOverMaxPayload_ArgumentExceptionNamingTheLimit()
    {
        (IEventPlane publisher, _) = Two(await Twin.PlanesAsync(2));

        ArgumentException e = await Assert.ThrowsAsync<ArgumentException>(() => publisher.PublishAsync("blob.huge", new byte[2 * EventPlaneTwin.MaxPayload]).AsTask());

        Assert.Contains("max_payload", e.Message);
    }

    [Theory]
    [InlineData("a.*")]
    [InlineData("a.>")]
    [InlineData("a..b")]
    [InlineData(".a")]
    [InlineData("a b")]
    [InlineData("")]
    public async Task PublishAsync_SubjectWithWildcardOrBadToken_ArgumentException(string subject)
    {
        (IEventPlane publisher, _) = Two(await Twin.PlanesAsync(2));

        await Assert.ThrowsAsync<ArgumentException>(() => publisher.PublishAsync(subject, new byte[1]).AsTask());
    }

    [Theory]
    [InlineData("a.>.b")]
    [InlineData("a..b")]
    [InlineData("a.")]
    [InlineData("")]
    public async Task SubscribeAsync_MalformedPattern_ArgumentException(string pattern)
    {
        (_, IEventPlane subscriber) = Two(await Twin.PlanesAsync(2));

        await Assert.ThrowsAsync<ArgumentException>(() => subscriber.SubscribeAsync(pattern));
    }

    [Fact]
    public async Task DisposeSubscription_ReadAllAsyncEndsAndOthersKeepReceiving()
    {
        (IEventPlane publisher, IEventPlane subscriber) = Two(await Twin.PlanesAsync(2));
        IEventSubscription subscription = await subscriber.SubscribeAsync("x.y");
        await using IEventSubscription other = await subscriber.SubscribeAsync("x.*");
        var seen = new List<string>();
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Task reading = Task.Run(async () =>
        {
            await foreach (EventMessage m in subscription.ReadAllAsync())
            {
                seen.Add(Encoding.UTF8.GetString(m.Payload.Span));
                first.TrySetResult();
            }
        });
        await publisher.PublishAsync("x.y", Encoding.UTF8.GetBytes("hello"));
        await first.Task.WaitAsync(Eventually.Patience);

        await subscription.DisposeAsync();
        await reading.WaitAsync(Eventually.Patience);
        await publisher.PublishAsync("x.y", Encoding.UTF8.GetBytes("after"));

        Assert.Equal(["hello"], seen);
        Assert.Equal(["hello", "after"], (await TakeAsync(other, 2)).Select(m => Encoding.UTF8.GetString(m.Payload.Span)));
    }

    [Fact]
    public async Task DisposePlane_ItsSubscriptionsEndAndCallsThrowObjectDisposed()
    {
        (_, IEventPlane subscriber) = Two(await Twin.PlanesAsync(2));
        IEventSubscription subscription = await subscriber.SubscribeAsync("x.>");
        Task reading = Task.Run(async () =>
        {
            await foreach (EventMessage m in subscription.ReadAllAsync())
            {
            }
        });

        await subscriber.DisposeAsync();

        await reading.WaitAsync(Eventually.Patience);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => subscriber.PublishAsync("x.y", new byte[1]).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => subscriber.SubscribeAsync("x.>"));
    }

    private static (IEventPlane Publisher, IEventPlane Subscriber) Two(IEventPlane[] planes) => (planes[0], planes[1]);

    private static async Task<List<EventMessage>> TakeAsync(IEventSubscription subscription, int count)
    {
        var got = new List<EventMessage>();
        using var timeout = new CancellationTokenSource(Eventually.Patience);
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

using Dynamo.Llm.Engines;

namespace Dynamo.Tests.Llm.Engines;

/// <summary>The engines' command queue: a blocking consumer and an async one both see every item, wait while there is none, and never lose a wake-up.</summary>
public sealed class CommandQueueTests
{
    [Fact]
    public void Wait_Empty_BlocksUntilTheTimeout()
    {
        var queue = new CommandQueue<int>();
        Assert.False(queue.Wait(20, CancellationToken.None));
        Assert.False(queue.TryDequeue(out _));
    }

    [Fact]
    public async Task WaitAsync_Empty_StaysPendingUntilAnItemOrCancellation()
    {
        var queue = new CommandQueue<int>();
        using var cts = new CancellationTokenSource();
        Task waiting = queue.WaitAsync(cts.Token);
        Assert.False(waiting.IsCompleted);
        queue.Enqueue(7);
        await waiting;
        Assert.True(queue.TryDequeue(out int item));
        Assert.Equal(7, item);

        Task cancelled = queue.WaitAsync(cts.Token);
        Assert.False(cancelled.IsCompleted);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
    }

    [Fact]
    public void Wait_Cancelled_ReturnsFalse()
    {
        var queue = new CommandQueue<int>();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.False(queue.Wait(Timeout.Infinite, cts.Token));
    }

    [Fact]
    public void Enqueue_ManyItemsBeforeOneWait_OneWakeUpThenTheWaitBlocksAgain()
    {
        var queue = new CommandQueue<int>();
        for (int i = 0; i < 100; i++)
        {
            queue.Enqueue(i);
        }

        Assert.True(queue.Wait(Timeout.Infinite, CancellationToken.None));
        int count = 0;
        while (queue.TryDequeue(out _))
        {
            count++;
        }

        Assert.Equal(100, count);
        Assert.False(queue.Wait(20, CancellationToken.None));
    }

    public static TheoryData<bool> Consumers => new() { false, true };

    /// <summary>Four producers against a consumer that drains, then waits only when it found nothing: it receives every item.</summary>
    [Theory]
    [MemberData(nameof(Consumers))]
    public async Task Consumer_FourProducers_ReceivesEveryItemInEachProducersOrder(bool async)
    {
        const int Producers = 4, Items = 20_000;
        var queue = new CommandQueue<(int Producer, int Item)>();
        int[] next = new int[Producers];
        int received = 0;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        bool Drain()
        {
            bool any = false;
            while (queue.TryDequeue(out var x))
            {
                Assert.Equal(next[x.Producer]++, x.Item);
                received++;
                any = true;
            }

            return any;
        }

        Task consumer = async
            ? Task.Run(async () =>
            {
                while (received < Producers * Items)
                {
                    if (!Drain())
                    {
                        await queue.WaitAsync(timeout.Token);
                    }
                }
            })
            : Task.Factory.StartNew(
                () =>
                {
                    while (received < Producers * Items)
                    {
                        if (!Drain())
                        {
                            Assert.True(queue.Wait(Timeout.Infinite, timeout.Token), "a wake-up was lost");
                        }
                    }
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
        await Task.WhenAll(Enumerable.Range(0, Producers).Select(p => Task.Run(() =>
        {
            for (int i = 0; i < Items; i++)
            {
                queue.Enqueue((p, i));
            }
        })));
        await consumer;
        Assert.All(next, n => Assert.Equal(Items, n));
    }
}

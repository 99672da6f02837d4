using System.Runtime.CompilerServices;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Tests.Runtime.RequestPlane;

public class InProcessRequestPlaneTests
{
    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Counter(int count, StrongBox<int> produced, TaskCompletionSource cancelled, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        try
        {
            for (int i = 0; i < count; i++)
            {
                produced.Value = i + 1;
                yield return BitConverter.GetBytes(i);
            }

            await Task.CompletedTask;
        }
        finally
        {
            // Runs when the plane stops enumerating this handler: cancelled or abandoned.
            if (cancellationToken.IsCancellationRequested)
            {
                cancelled.TrySetResult();
            }
        }
    }

    [Fact]
    public async Task RequestStream_SlowConsumer_BoundsTheProducer()
    {
        await using var plane = new InProcessRequestPlane();
        var produced = new StrongBox<int>();
        await using IAsyncDisposable serve = await plane.ServeAsync("s", (c, p, ct) => Counter(100_000, produced, new TaskCompletionSource(), ct));
        int read = 0;
        await foreach (ReadOnlyMemory<byte> item in plane.RequestStreamAsync("s", default, RequestOptions.Default))
        {
            Assert.Equal(read, BitConverter.ToInt32(item.Span));
            read++;
            if (read == 10)
            {
                await Task.Delay(100);
                Assert.InRange(produced.Value, 10, 10 + InProcessRequestPlane.Window + 2);
            }
        }

        Assert.Equal(100_000, read);
    }

    [Fact]
    public async Task RequestStream_AbandonedEarly_CancelsHandler()
    {
        await using var plane = new InProcessRequestPlane();
        var cancelled = new TaskCompletionSource();
        await using IAsyncDisposable serve = await plane.ServeAsync("s", (c, p, ct) => Counter(int.MaxValue, new StrongBox<int>(), cancelled, ct));
        await foreach (ReadOnlyMemory<byte> item in plane.RequestStreamAsync("s", default, RequestOptions.Default))
        {
            break;
        }

        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task RequestStream_HandlerThrows_RemoteErrorWithCode()
    {
        await using var plane = new InProcessRequestPlane();
        await using IAsyncDisposable serve = await plane.ServeAsync("s", (c, p, ct) => Fail(ct));
        var e = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in plane.RequestStreamAsync("s", default, RequestOptions.Default))
            {
            }
        });
        Assert.Equal(RequestErrorKind.Remote, e.Kind);
        Assert.Equal("invalid_request", e.Code);
        Assert.Equal("bad prompt", e.Message);
    }

    [Fact]
    public async Task RequestStream_DeadlinePassed_DeadlineExceeded()
    {
        await using var plane = new InProcessRequestPlane();
        await using IAsyncDisposable serve = await plane.ServeAsync("s", (c, p, ct) => Counter(int.MaxValue, new StrongBox<int>(), new TaskCompletionSource(), ct));
        var e = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in plane.RequestStreamAsync("s", default, RequestOptions.Default with { Deadline = TimeSpan.FromMilliseconds(50) }))
            {
                await Task.Delay(1);
            }
        });
        Assert.Equal(RequestErrorKind.DeadlineExceeded, e.Kind);
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Fail([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Task.Yield();
        yield return new byte[1];
        throw new EndpointException("invalid_request", "bad prompt");
    }
}

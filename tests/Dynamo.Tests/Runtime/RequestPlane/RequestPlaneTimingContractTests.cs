using System.Diagnostics;
using System.Runtime.CompilerServices;
using Dynamo.Runtime.RequestPlane;
using static Dynamo.Tests.Runtime.RequestPlane.TestHandlers;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>
/// The parts of the request-plane contract that bound time (README.md, "Contract"), for both planes; in the
/// timing collection (each subclass says so: xUnit does not inherit the attribute), so that the rest of the
/// suite does not load the machine under them.
/// </summary>
public abstract class RequestPlaneTimingContractTests(RequestPlaneTwin twin) : TwinTests<RequestPlaneTwin>(twin)
{
    [Fact]
    public async Task RequestStream_NothingServesSubject_NoRespondersWithinOneSecond()
    {
        (_, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("nobody.home", default, RequestOptions.Default)));

        Assert.Equal(RequestErrorKind.NoResponders, error.Kind);
        Assert.Equal("no_responders", error.Code);
        Assert.True(error.InstanceFailed);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task RequestStream_ClientCancelsMidStream_HandlerTokenCancelledWithinOneSecond()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using IAsyncDisposable serving = await server.ServeAsync("slow", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(20), handlerCancelled, ct));

        using var cts = new CancellationTokenSource();
        int received = 0;
        var clock = new Stopwatch();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("slow", default, RequestOptions.Default, cts.Token))
            {
                if (++received == 3)
                {
                    clock.Start();
                    await cts.CancelAsync();
                }
            }
        });

        await handlerCancelled.Task.WaitAsync(Eventually.Patience);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"handler cancelled {clock.Elapsed} after the client");
        await Eventually.WaitUntilAsync(() => Twin.ActiveCount(serving) == 0, "the server to forget the request");
    }

    [Fact]
    public async Task RequestStream_EnumerationAbandonedEarly_HandlerTokenCancelledWithinOneSecond()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using IAsyncDisposable serving = await server.ServeAsync("slow", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(20), handlerCancelled, ct));

        int received = 0;
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("slow", default, RequestOptions.Default))
        {
            if (++received == 3)
            {
                break;
            }
        }

        var clock = Stopwatch.StartNew();
        await handlerCancelled.Task.WaitAsync(Eventually.Patience);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"handler cancelled {clock.Elapsed} after the client left");
    }

    [Fact]
    public async Task RequestStream_DeadlinePasses_DeadlineExceededAndHandlerCancelled()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        RequestContext? seen = null;
        await using IAsyncDisposable serving = await server.ServeAsync("late", (context, _, ct) =>
        {
            seen = context;
            return Forever(TimeSpan.FromMilliseconds(100), handlerCancelled, ct);
        });

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(() =>
            DrainAsync(client.RequestStreamAsync("late", default, RequestOptions.Default with { Deadline = TimeSpan.FromMilliseconds(600), RequestId = "r-42" })));

        Assert.Equal(RequestErrorKind.DeadlineExceeded, error.Kind);
        Assert.Equal("deadline_exceeded", error.Code);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(3));
        await handlerCancelled.Task.WaitAsync(Eventually.Patience);
        Assert.Equal("r-42", seen!.RequestId);
        Assert.NotNull(seen.Deadline);
    }

    [Fact]
    public async Task RequestStream_HandlerSilentLongerThanIdleTimeout_StreamStaysAlive()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Pondering([EnumeratorCancellation] CancellationToken ct = default)
        {
            yield return new byte[] { 1 };
            await Task.Delay(1500, ct); // silent for twice the idle timeout
            yield return new byte[] { 2 };
        }

        await using IAsyncDisposable serving = await server.ServeAsync("think", (_, _, ct) => Pondering(ct));

        var items = new List<byte>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("think", default, RequestOptions.Default with { IdleTimeout = TimeSpan.FromMilliseconds(700) }))
        {
            items.Add(item.Span[0]);
        }

        Assert.Equal([1, 2], items);
    }
}

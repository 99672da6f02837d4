using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using Dynamo.Runtime.RequestPlane;
using static Dynamo.Tests.Runtime.RequestPlane.TestHandlers;

namespace Dynamo.Tests.Runtime.RequestPlane;

/// <summary>
/// The request-plane contract (src/Dynamo.Runtime/RequestPlane/README.md, "Contract"), run against the in-process
/// plane and the NATS plane alike. These tests wait for conditions only; the ones that bound time are in
/// <see cref="RequestPlaneTimingContractTests"/>.
/// </summary>
public abstract class RequestPlaneContractTests(RequestPlaneTwin twin) : TwinTests<RequestPlaneTwin>(twin)
{
    [Fact]
    public async Task RequestStream_ThousandResponses_ArriveCompleteAndInOrder()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        await using IAsyncDisposable serving = await server.ServeAsync("gen", (_, payload, ct) => Count(BitConverter.ToInt32(payload.Span), ct));

        var received = new List<int>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("gen", BitConverter.GetBytes(1000), RequestOptions.Default))
        {
            received.Add(BitConverter.ToInt32(item.Span));
        }

        Assert.Equal(Enumerable.Range(0, 1000), received);
    }

    [Fact]
    public async Task RequestStream_CallerInASpan_HandlerSeesItsW3CTraceContext()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Echo(RequestContext context)
        {
            ActivityContext parent = context.TraceParent;
            yield return Encoding.UTF8.GetBytes($"{parent.TraceId.ToHexString()} {parent.SpanId.ToHexString()} {parent.TraceFlags & ActivityTraceFlags.Recorded} {parent.TraceState}");
            await Task.CompletedTask;
        }

        await using IAsyncDisposable serving = await server.ServeAsync("traced", (context, _, _) => Echo(context));

        var span = new Activity("caller");
        span.SetIdFormat(ActivityIdFormat.W3C);
        span.ActivityTraceFlags = ActivityTraceFlags.Recorded;
        span.TraceStateString = "vendor=1";
        span.Start();
        string inSpan;
        try
        {
            inSpan = Assert.Single(await StringsAsync(client.RequestStreamAsync("traced", ReadOnlyMemory<byte>.Empty, RequestOptions.Default)));
        }
        finally
        {
            span.Stop();
        }

        Assert.Equal($"{span.TraceId.ToHexString()} {span.SpanId.ToHexString()} Recorded vendor=1", inSpan);
        Assert.Null(Activity.Current);
        string outside = Assert.Single(await StringsAsync(client.RequestStreamAsync("traced", ReadOnlyMemory<byte>.Empty, RequestOptions.Default)));
        Assert.Equal($"{default(ActivityTraceId).ToHexString()} {default(ActivitySpanId).ToHexString()} None ", outside);
    }

    [Fact]
    public async Task Health_PlanesRunning_Connected()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);

        Assert.True(client.Health.IsConnected);
        Assert.Null(client.Health.Reason);
        Assert.Null(client.Health.DisconnectedSince);
        Assert.True(server.Health.IsConnected);
    }

    [Fact]
    public async Task RequestStream_EmptyResponsesAndEmptyStream_ArriveAsSent()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Shapes(ReadOnlyMemory<byte> payload)
        {
            foreach (byte length in payload.ToArray())
            {
                yield return new byte[length];
            }

            await Task.CompletedTask;
        }

        await using IAsyncDisposable serving = await server.ServeAsync("shapes", (_, payload, _) => Shapes(payload));

        var lengths = new List<int>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("shapes", new byte[] { 0, 3, 0 }, RequestOptions.Default))
        {
            lengths.Add(item.Length);
        }

        Assert.Equal([0, 3, 0], lengths);
        Assert.Empty(await StringsAsync(client.RequestStreamAsync("shapes", ReadOnlyMemory<byte>.Empty, RequestOptions.Default)));
    }

    [Fact]
    public async Task RequestStream_LargeRequestAndResponse_ArriveIntact()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> HashThenReverse(ReadOnlyMemory<byte> payload)
        {
            yield return SHA256.HashData(payload.Span);
            byte[] reversed = payload.ToArray();
            Array.Reverse(reversed);
            yield return reversed;
            await Task.CompletedTask;
        }

        await using IAsyncDisposable serving = await server.ServeAsync("big", (_, payload, _) => HashThenReverse(payload));
        byte[] request = new byte[RequestPlaneTwin.MaxPayload / 2];
        new Random(12).NextBytes(request);

        var responses = new List<byte[]>();
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("big", request, RequestOptions.Default))
        {
            responses.Add(item.ToArray());
        }

        Assert.Equal(2, responses.Count);
        Assert.Equal(SHA256.HashData(request), responses[0]);
        Assert.Equal(request.Reverse(), responses[1]);
    }

    [Fact]
    public async Task RequestStream_PayloadOverMaxPayload_TransportError()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        await using IAsyncDisposable serving = await server.ServeAsync("big", (_, _, ct) => One("never"));

        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("big", new byte[2 * RequestPlaneTwin.MaxPayload], RequestOptions.Default)));

        Assert.Equal(RequestErrorKind.Transport, error.Kind);
        Assert.Equal("payload_too_large", error.Code);
        Assert.Contains("max_payload", error.Message);
    }

    [Fact]
    public async Task RequestStream_ResponseOverMaxPayload_TransportErrorAfterEarlierResponsesAndServerServesOn()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> SmallThenHuge(ReadOnlyMemory<byte> payload)
        {
            yield return "small"u8.ToArray();
            if (payload.Length > 0)
            {
                yield return new byte[2 * RequestPlaneTwin.MaxPayload];
            }

            await Task.CompletedTask;
        }

        await using IAsyncDisposable serving = await server.ServeAsync("huge", (_, payload, _) => SmallThenHuge(payload));

        var received = new List<string>();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("huge", new byte[1], RequestOptions.Default))
            {
                received.Add(Encoding.UTF8.GetString(item.Span));
            }
        });

        Assert.Equal(["small"], received);
        Assert.Equal(RequestErrorKind.Transport, error.Kind);
        Assert.Equal("payload_too_large", error.Code);
        Assert.Contains("max_payload", error.Message);
        Assert.Equal(["small"], await StringsAsync(client.RequestStreamAsync("huge", ReadOnlyMemory<byte>.Empty, RequestOptions.Default)));
    }

    [Fact]
    public async Task RequestStream_ManyConcurrentStreams_AllComplete()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        await using IAsyncDisposable serving = await server.ServeAsync("gen", (_, payload, ct) => Count(BitConverter.ToInt32(payload.Span), ct));

        int[] counts = await Task.WhenAll(Enumerable.Range(0, 20).Select(async _ =>
        {
            int n = 0;
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("gen", BitConverter.GetBytes(300), RequestOptions.Default))
            {
                Assert.Equal(n++, BitConverter.ToInt32(item.Span));
            }

            return n;
        }));

        Assert.All(counts, c => Assert.Equal(300, c));
    }

    [Fact]
    public async Task RequestStream_HandlerThrows_RemoteErrorWithMessageAndInternalCode()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        await using IAsyncDisposable serving = await server.ServeAsync("boom", (_, _, ct) => ThrowAfter(2, new InvalidOperationException("the model fell over"), ct));

        var received = new List<ReadOnlyMemory<byte>>();
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("boom", default, RequestOptions.Default))
            {
                received.Add(item);
            }
        });

        Assert.Equal(2, received.Count);
        Assert.Equal(RequestErrorKind.Remote, error.Kind);
        Assert.Equal("internal", error.Code);
        Assert.Equal("the model fell over", error.Message);
        Assert.False(error.InstanceFailed);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public async Task RequestStream_EndpointException_CodeAndMessageReachClientAfterEarlierResponses(int before)
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        await using IAsyncDisposable serving = await server.ServeAsync("strict", (_, _, ct) => ThrowAfter(before, new EndpointException("invalid_request", "max_tokens must be positive"), ct));

        int received = 0;
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("strict", default, RequestOptions.Default))
            {
                received++;
            }
        });

        Assert.Equal(before, received);
        Assert.Equal(RequestErrorKind.Remote, error.Kind);
        Assert.Equal("invalid_request", error.Code);
        Assert.Equal("max_tokens must be positive", error.Message);
    }

    [Fact]
    public async Task ServeAsync_TwoServersInQueueGroup_RequestsSpreadOverBoth()
    {
        (IRequestPlane first, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        (IRequestPlane second, _) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        await using IAsyncDisposable a = await first.ServeAsync("shared", (_, _, ct) => One("a"), queueGroup: "workers");
        await using IAsyncDisposable b = await second.ServeAsync("shared", (_, _, ct) => One("b"), queueGroup: "workers");

        var tally = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0 };
        for (int i = 0; i < 100; i++)
        {
            foreach (string who in await StringsAsync(client.RequestStreamAsync("shared", default, RequestOptions.Default)))
            {
                tally[who]++;
            }
        }

        Assert.Equal(100, tally["a"] + tally["b"]);
        Assert.True(tally["a"] >= 20 && tally["b"] >= 20, $"a={tally["a"]} b={tally["b"]}");
    }

    [Fact]
    public async Task RequestStream_SlowConsumer_ProducerStaysWithinWindow()
    {
        const int window = 16;
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default with { Window = window });
        var produced = new StrongBox<int>();
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Producer([EnumeratorCancellation] CancellationToken ct = default)
        {
            for (int i = 0; i < 400; i++)
            {
                Interlocked.Increment(ref produced.Value);
                yield return BitConverter.GetBytes(i);
            }

            await Task.CompletedTask;
        }

        await using IAsyncDisposable serving = await server.ServeAsync("fast", (_, _, ct) => Producer(ct));

        int consumed = 0;
        int worstLead = 0;
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("fast", default, RequestOptions.Default))
        {
            Assert.Equal(consumed, BitConverter.ToInt32(item.Span));
            consumed++;
            if (consumed == 1)
            {
                // Nothing taken beyond the first: the producer fills the window, then waits.
                await Eventually.WaitUntilAsync(() => Volatile.Read(ref produced.Value) >= 1 + window, "the producer to fill the window");
            }
            else if (consumed <= 100)
            {
                await Task.Delay(2); // a slow consumer
            }

            worstLead = Math.Max(worstLead, Volatile.Read(ref produced.Value) - consumed);
        }

        Assert.Equal(400, consumed);
        Assert.InRange(worstLead, window, window + 1);
    }

    [Fact]
    public async Task RequestStream_ConsumerTakesNothingForAckTimeout_HandlerCancelledAndStreamEndsWithAckTimeout()
    {
        const int window = 8;
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default with { Window = window, AckTimeout = TimeSpan.FromMilliseconds(500) });
        var produced = new StrongBox<int>();
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => Endless(produced, handlerCancelled, ct));

        await using IAsyncEnumerator<ReadOnlyMemory<byte>> stream = client.RequestStreamAsync("svc", default, RequestOptions.Default).GetAsyncEnumerator();
        Assert.True(await stream.MoveNextAsync());
        await handlerCancelled.Task.WaitAsync(Eventually.Patience);
        int taken = 1;
        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            while (await stream.MoveNextAsync())
            {
                taken++;
            }
        });

        Assert.Equal(RequestErrorKind.Transport, error.Kind);
        Assert.Equal("ack_timeout", error.Code);
        Assert.False(error.InstanceFailed);
        Assert.InRange(taken, 1, window + 1);
        Assert.InRange(Volatile.Read(ref produced.Value), window, window + 2);
    }

    [Fact]
    public async Task RequestStream_HandlerFinishesWhileCallerStopsReading_CallerEndsCleanlyAndServerServesOn()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Three()
        {
            try
            {
                for (int i = 0; i < 3; i++)
                {
                    yield return BitConverter.GetBytes(i);
                }

                await Task.CompletedTask;
            }
            finally
            {
                ended.TrySetResult();
            }
        }

        await using IAsyncDisposable serving = await server.ServeAsync("three", (_, _, _) => Three());

        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("three", default, RequestOptions.Default))
        {
            await ended.Task.WaitAsync(Eventually.Patience);
            break;
        }

        await Eventually.WaitUntilAsync(() => Twin.ActiveCount(serving) == 0, "the server to forget the request");
        int count = 0;
        await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("three", default, RequestOptions.Default))
        {
            Assert.Equal(count++, BitConverter.ToInt32(item.Span));
        }

        Assert.Equal(3, count);
    }

    [Fact]
    public async Task RequestStream_HandlerIgnoresCancellation_CallerLeavesWithoutWaitingForIt()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Stubborn()
        {
            yield return new byte[] { 1 };
            await gate.Task; // ignores its token
            yield return new byte[] { 2 };
        }

        await using IAsyncDisposable serving = await server.ServeAsync("stubborn", (_, _, _) => Stubborn());
        try
        {
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("stubborn", default, RequestOptions.Default))
            {
                break;
            }

            Assert.Equal(1, Twin.ActiveCount(serving));
        }
        finally
        {
            gate.TrySetResult();
        }

        await Eventually.WaitUntilAsync(() => Twin.ActiveCount(serving) == 0, "the stubborn handler to end");
    }

    [Fact]
    public async Task RequestStream_HandlerIgnoresDeadline_CallerStillGetsDeadlineExceeded()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async IAsyncEnumerable<ReadOnlyMemory<byte>> Stubborn()
        {
            yield return new byte[] { 1 };
            await gate.Task; // ignores its token
        }

        await using IAsyncDisposable serving = await server.ServeAsync("stubborn", (_, _, _) => Stubborn());
        try
        {
            int received = 0;
            var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
            {
                await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("stubborn", default, RequestOptions.Default with { Deadline = TimeSpan.FromMilliseconds(300) }))
                {
                    received++;
                }
            });

            Assert.Equal(1, received);
            Assert.Equal(RequestErrorKind.DeadlineExceeded, error.Kind);
            Assert.Equal("deadline_exceeded", error.Code);
            Assert.False(gate.Task.IsCompleted);
        }
        finally
        {
            gate.TrySetResult();
        }
    }

    [Fact]
    public async Task DisposeServing_InFlightRequest_ClientGetsServerStoppedAndHandlerCancelled()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        var handlerCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        IAsyncDisposable serving = await server.ServeAsync("svc", (_, _, ct) => Forever(TimeSpan.FromMilliseconds(20), handlerCancelled, ct));

        var error = await Assert.ThrowsAsync<RequestPlaneException>(async () =>
        {
            int received = 0;
            await foreach (ReadOnlyMemory<byte> item in client.RequestStreamAsync("svc", default, RequestOptions.Default))
            {
                if (++received == 2)
                {
                    _ = Task.Run(async () => await serving.DisposeAsync());
                }
            }
        });

        Assert.Equal(RequestErrorKind.Unreachable, error.Kind);
        Assert.Equal("server_stopped", error.Code);
        Assert.True(error.InstanceFailed);
        await handlerCancelled.Task.WaitAsync(Eventually.Patience);
    }

    [Fact]
    public async Task RequestStream_ServingDisposed_NoResponders()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);
        IAsyncDisposable serving = await server.ServeAsync("gone", (_, _, ct) => One("here"));
        Assert.Equal(["here"], await StringsAsync(client.RequestStreamAsync("gone", default, RequestOptions.Default)));

        await serving.DisposeAsync();

        var error = await Assert.ThrowsAsync<RequestPlaneException>(() => DrainAsync(client.RequestStreamAsync("gone", default, RequestOptions.Default)));
        Assert.Equal(RequestErrorKind.NoResponders, error.Kind);
        Assert.Equal("no_responders", error.Code);
    }

    [Fact]
    public async Task DisposePlane_ThenServeOrRequest_ObjectDisposed()
    {
        (IRequestPlane server, IRequestPlane client) = await Twin.PlanesAsync(RequestPlaneSettings.Default);

        await client.DisposeAsync();
        await server.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => DrainAsync(client.RequestStreamAsync("x", default, RequestOptions.Default)));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => server.ServeAsync("x", (_, _, ct) => One("never")));
    }
}

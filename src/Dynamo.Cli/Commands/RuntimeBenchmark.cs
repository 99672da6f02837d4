using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Cli.Commands;

/// <summary>
/// The request plane under test: a bench endpoint whose payload says how many responses of what size to
/// stream back (8 bytes: count u32 LE, size u32 LE), and the client measurements: sequential one-response
/// round trips (p50/p99) and long streams (responses/s, MB/s), single and concurrent.
/// </summary>
internal sealed class RuntimeBenchmark(EndpointClient client)
{
    public static readonly EndpointAddress Address = new("dynamo", "bench", "stream");

    public sealed record Result(string Transport, int Requests, double RoundTripP50Us, double RoundTripP99Us, int StreamResponses, int ResponseBytes, int Streams, double ResponsesPerSecond, double MegabytesPerSecond);

    public static Task<ServedEndpoint> ServeAsync(DistributedRuntime runtime, CancellationToken cancellationToken = default) =>
        runtime.ServeEndpointAsync(Address, Handle, cancellationToken);

    public async Task<Result> RunAsync(string transport, int requests, int streamResponses, int responseBytes, int streams, CancellationToken cancellationToken = default)
    {
        // Warm-up: JIT, connections, subscriptions.
        for (int i = 0; i < 50; i++)
        {
            await DrainAsync(Payload(1, 16), cancellationToken);
        }

        var latencies = new double[requests];
        byte[] one = Payload(1, 64);
        for (int i = 0; i < requests; i++)
        {
            long start = Stopwatch.GetTimestamp();
            await DrainAsync(one, cancellationToken);
            latencies[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        Array.Sort(latencies);
        byte[] stream = Payload(streamResponses, responseBytes);
        long t0 = Stopwatch.GetTimestamp();
        long[] counts = await Task.WhenAll(Enumerable.Range(0, streams).Select(_ => DrainAsync(stream, cancellationToken)));
        double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        long total = counts.Sum();
        if (total != (long)streamResponses * streams)
        {
            throw new InvalidOperationException($"expected {streamResponses * streams} responses, got {total}");
        }

        return new Result(transport, requests, Percentile(latencies, 0.5), Percentile(latencies, 0.99), streamResponses, responseBytes, streams,
            total / seconds, total * (double)responseBytes / seconds / 1e6);
    }

    private static double Percentile(double[] sorted, double q) => sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];

    private static byte[] Payload(int count, int size)
    {
        byte[] p = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)count);
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), (uint)size);
        return p;
    }

    private async Task<long> DrainAsync(byte[] payload, CancellationToken cancellationToken)
    {
        long n = 0;
        await foreach (ReadOnlyMemory<byte> r in client.StreamAsync(payload, cancellationToken: cancellationToken))
        {
            n++;
        }

        return n;
    }

    private static async IAsyncEnumerable<ReadOnlyMemory<byte>> Handle(RequestContext context, ReadOnlyMemory<byte> payload, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (payload.Length != 8)
        {
            throw new EndpointException("invalid_request", "bench payload is 8 bytes: count u32, size u32");
        }

        uint count = BinaryPrimitives.ReadUInt32LittleEndian(payload.Span);
        int size = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(payload.Span[4..]), 1 << 20);
        byte[] response = new byte[size];
        for (uint i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return response;
        }

        await Task.CompletedTask;
    }
}

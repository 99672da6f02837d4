using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Dynamo.Load.Reports;
using Dynamo.Runtime;
using Dynamo.Runtime.RequestPlane;

namespace Dynamo.Load.Benchmarks;

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

    /// <summary>
    /// Waits up to <paramref name="wait"/> for an instance of the bench endpoint in <paramref name="runtime"/>'s
    /// discovery, then measures it; null when none appeared.
    /// </summary>
    public static async Task<Result?> MeasureAsync(DistributedRuntime runtime, string transport, int requests, int streamResponses, int responseBytes, int streams, TimeSpan wait, CancellationToken cancellationToken = default)
    {
        await using EndpointClient endpoint = await runtime.CreateClientAsync(Address, cancellationToken: cancellationToken).ConfigureAwait(false);
        try
        {
            await endpoint.WaitForInstancesAsync(1, cancellationToken).WaitAsync(wait, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return null;
        }

        return await new RuntimeBenchmark(endpoint).RunAsync(transport, requests, streamResponses, responseBytes, streams, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One JSON object (indented): the results array, one object per transport.</summary>
    public static void WriteJson(Stream output, IReadOnlyList<Result> results)
    {
        JsonReport.Write(output, indented: true, writer =>
        {
            writer.WriteStartArray("results");
            foreach (Result r in results)
            {
                writer.WriteStartObject();
                writer.WriteString("transport", r.Transport);
                writer.WriteNumber("requests", r.Requests);
                writer.WriteNumber("round_trip_p50_us", Math.Round(r.RoundTripP50Us, 1));
                writer.WriteNumber("round_trip_p99_us", Math.Round(r.RoundTripP99Us, 1));
                writer.WriteNumber("stream_responses", r.StreamResponses);
                writer.WriteNumber("response_bytes", r.ResponseBytes);
                writer.WriteNumber("streams", r.Streams);
                writer.WriteNumber("responses_per_second", Math.Round(r.ResponsesPerSecond));
                writer.WriteNumber("megabytes_per_second", Math.Round(r.MegabytesPerSecond, 2));
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        });
    }

    /// <summary>The table: one row per transport after a blank line and the header.</summary>
    public static void WriteTable(TextWriter output, IReadOnlyList<Result> results)
    {
        output.WriteLine();
        output.WriteLine($"{"transport",-26} {"round trip p50",15} {"p99",10} {"responses/s",12} {"MB/s",8}  (streams x responses x bytes)");
        foreach (Result r in results)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Transport,-26} {r.RoundTripP50Us,12:F0} us {r.RoundTripP99Us,7:F0} us {r.ResponsesPerSecond,12:F0} {r.MegabytesPerSecond,8:F1}  ({r.Streams} x {r.StreamResponses} x {r.ResponseBytes})"));
        }
    }

    private async Task<Result> RunAsync(string transport, int requests, int streamResponses, int responseBytes, int streams, CancellationToken cancellationToken = default)
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

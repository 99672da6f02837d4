using System.Diagnostics;
using System.Globalization;
using System.Net.ServerSentEvents;
using System.Text;
using System.Text.Json;
using Dynamo.Frontend;
using Dynamo.Llm.Engines;
using Dynamo.Load.Reports;
using Dynamo.Runtime;
using Microsoft.Extensions.Logging.Abstractions;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench frontend</c>: the serving stack's own cost, with the echo engine (no compute): the
/// same requests sent to the engine directly, through the worker endpoint (runtime, in-process), and
/// through the HTTP frontend (tokenizer, chat template, SSE); requests/s, latency per request and the
/// time per streamed token, and what each layer adds.
/// </summary>
internal static class FrontendBenchmark
{
    /// <summary>One layer's figures: requests/s, latency p50/p99 in ms, mean time per streamed token in µs.</summary>
    public sealed record Layer(string Name, double RequestsPerSecond, double P50Ms, double P99Ms, double TokenUs);

    /// <summary>
    /// Deploys one worker (<paramref name="startWorker"/>, an echo engine) and a frontend in one in-process
    /// cluster and measures each layer: a short warm-up, then <paramref name="requests"/> requests of
    /// <paramref name="tokens"/> tokens, <paramref name="concurrency"/> at a time; a line per layer on the log.
    /// </summary>
    public static async Task<IReadOnlyList<Layer>> RunAsync(Func<DistributedRuntime, CancellationToken, Task<BenchWorker>> startWorker, int requests, int concurrency, int tokens, TextWriter log, CancellationToken cancellationToken = default)
    {
        await using var cluster = new InProcessCluster();
        await using DistributedRuntime workerRuntime = await cluster.ConnectAsync(cancellationToken).ConfigureAwait(false);
        await using DistributedRuntime frontendRuntime = await cluster.ConnectAsync(cancellationToken).ConfigureAwait(false);
        await using BenchWorker worker = await startWorker(workerRuntime, cancellationToken).ConfigureAwait(false);
        await using FrontendServer server = await FrontendServer.StartAsync(frontendRuntime, FrontendOptions.Default with { Host = "127.0.0.1", HttpPort = 0 }, NullLoggerFactory.Instance, cancellationToken).ConfigureAwait(false);
        await server.WaitForModelAsync(worker.Model, cancellationToken).ConfigureAwait(false);
        await using EndpointClient endpoint = await frontendRuntime.CreateClientAsync(worker.Endpoint, cancellationToken: cancellationToken).ConfigureAwait(false);
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        int[] prompt = [.. Enumerable.Range(0, tokens).Select(i => 100 + (i % 50))];
        string text = string.Join(' ', Enumerable.Repeat("hello", tokens));
        byte[] generate = Encoding.UTF8.GetBytes($"{{\"version\":1,\"token_ids\":[{string.Join(',', prompt)}],\"sampling\":{{\"max_tokens\":{tokens}}}}}");
        string body = JsonSerializer.Serialize(new { model = worker.Model, prompt = text, max_tokens = tokens, stream = true });
        var sampling = SamplingParams.Default with { MaxTokens = tokens };
        int counter = 0;

        async Task<int> Direct()
        {
            int got = 0;
            await foreach (EngineOutput o in worker.Engine.SubmitAsync(new EngineRequest($"d{Interlocked.Increment(ref counter)}", prompt, sampling), cancellationToken).ConfigureAwait(false))
            {
                got += o.TokenIds.Count;
            }

            return got;
        }

        async Task<int> Endpoint()
        {
            int got = 0;
            await foreach (ReadOnlyMemory<byte> _ in endpoint.StreamAsync(generate, cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                got++;
            }

            return got;
        }

        async Task<int> Http()
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            await using Stream stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            int got = 0;
            await foreach (SseItem<string> item in SseParser.Create(stream).EnumerateAsync(cancellationToken).ConfigureAwait(false))
            {
                if (item.Data != "[DONE]")
                {
                    got++;
                }
            }

            return got;
        }

        var layers = new List<Layer>();
        foreach (var (name, call) in new (string, Func<Task<int>>)[] { ("engine direct", Direct), ("worker endpoint (runtime)", Endpoint), ("HTTP frontend + SSE", Http) })
        {
            await MeasureAsync(call, Math.Min(50, requests), concurrency).ConfigureAwait(false);
            var (rps, p50, p99, meanMs) = await MeasureAsync(call, requests, concurrency).ConfigureAwait(false);
            layers.Add(new Layer(name, rps, p50, p99, meanMs / tokens * 1000));
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}: {layers[^1].RequestsPerSecond:F0} req/s"));
        }

        return layers;
    }

    /// <summary>One JSON object (indented): the run's shape and one object per layer.</summary>
    public static void WriteJson(Stream output, int requests, int concurrency, int tokens, IReadOnlyList<Layer> layers)
    {
        JsonReport.Write(output, indented: true, writer =>
        {
            writer.WriteNumber("requests", requests);
            writer.WriteNumber("concurrency", concurrency);
            writer.WriteNumber("tokens_per_request", tokens);
            writer.WriteStartArray("layers");
            foreach (Layer l in layers)
            {
                writer.WriteStartObject();
                writer.WriteString("layer", l.Name);
                writer.WriteNumber("requests_per_second", Math.Round(l.RequestsPerSecond, 1));
                writer.WriteNumber("latency_p50_ms", Math.Round(l.P50Ms, 3));
                writer.WriteNumber("latency_p99_ms", Math.Round(l.P99Ms, 3));
                writer.WriteNumber("per_token_us", Math.Round(l.TokenUs, 2));
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        });
    }

    /// <summary>The table: one row per layer, with the p50 each adds to the one before.</summary>
    public static void WriteTable(TextWriter output, int requests, int concurrency, int tokens, IReadOnlyList<Layer> layers)
    {
        output.WriteLine();
        output.WriteLine($"echo engine, {requests} requests x {tokens} tokens, {concurrency} in flight");
        output.WriteLine($"{"layer",-28} {"req/s",9} {"p50 ms",9} {"p99 ms",9} {"us/token",9} {"adds p50 ms",12}");
        for (int i = 0; i < layers.Count; i++)
        {
            Layer l = layers[i];
            string adds = i == 0 ? "" : (l.P50Ms - layers[i - 1].P50Ms).ToString("F3", CultureInfo.InvariantCulture);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{l.Name,-28} {l.RequestsPerSecond,9:F0} {l.P50Ms,9:F3} {l.P99Ms,9:F3} {l.TokenUs,9:F2} {adds,12}"));
        }
    }

    /// <summary>Runs <paramref name="count"/> calls, <paramref name="concurrency"/> at a time: requests/s, latency p50/p99 (ms), mean latency (ms).</summary>
    private static async Task<(double Rps, double P50, double P99, double MeanMs)> MeasureAsync(Func<Task<int>> call, int count, int concurrency)
    {
        var latencies = new double[count];
        int next = -1;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                long start = Stopwatch.GetTimestamp();
                if (await call().ConfigureAwait(false) == 0)
                {
                    throw new InvalidOperationException("empty response");
                }

                latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            }
        })).ConfigureAwait(false);
        double seconds = clock.Elapsed.TotalSeconds;
        double mean = latencies.Average();
        Array.Sort(latencies);
        return (count / seconds, latencies[count / 2], latencies[Math.Min(count - 1, (int)(count * 0.99))], mean);
    }
}

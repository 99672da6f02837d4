using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Dynamo.Components.KvTransfer;
using Dynamo.Llm.Kv;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench transfer</c>: the KV transfer plane against its bounds, per payload size, on loopback in this
/// process: (a) a plain memory copy of that many bytes (<see cref="Span{T}.CopyTo"/> between two warm arrays), (b) a
/// plain TCP stream of that many bytes (a fresh connection, one send, the receiver reading into a preallocated
/// array, a one-byte acknowledgement), (c) <see cref="KvTransferClient.SendAsync"/> to a
/// <see cref="KvTransferServer"/> of a payload of that size (a fresh connection, header and layout, data into a
/// fresh array for the ticket, acknowledgement) and the same into pooled buffers
/// (<see cref="KvTransferServerOptions.PoolBuffers"/>), both socket kinds with the same buffer sizes. Repetitions are
/// interleaved (a, b, c, a, b, c, ...) after one untimed round; each figure is the median GB/s (10^9 bytes/s).
/// </summary>
internal static class TransferBenchmark
{
    /// <summary>The figures of one size: GB/s of the copy, the TCP stream and the transfers (medians, and the best of each).</summary>
    public sealed record Row(long SizeBytes, double MemcpyGbps, double TcpGbps, double TransferGbps, double PooledGbps, double BestTcpGbps, double BestTransferGbps, double BestPooledGbps)
    {
        /// <summary>Milliseconds of the median plain TCP stream.</summary>
        public double TcpMs => SizeBytes / TcpGbps / 1e6;

        /// <summary>Milliseconds of the median transfer (connection, header, data, acknowledgement).</summary>
        public double TransferMs => SizeBytes / TransferGbps / 1e6;

        /// <summary>Milliseconds of the median transfer into pooled buffers.</summary>
        public double PooledMs => SizeBytes / PooledGbps / 1e6;

        /// <summary>Transfer / plain TCP, medians.</summary>
        public double Ratio => TransferGbps / TcpGbps;

        /// <summary>Transfer into pooled buffers / plain TCP, medians.</summary>
        public double PooledRatio => PooledGbps / TcpGbps;

        /// <summary>The row's members in the JSON of <c>bench transfer</c> (and of <c>bench disagg</c>'s transfer section).</summary>
        public void WriteMembers(Utf8JsonWriter w)
        {
            w.WriteNumber("size_bytes", SizeBytes);
            w.WriteNumber("memcpy_gbps", Math.Round(MemcpyGbps, 3));
            w.WriteNumber("tcp_gbps", Math.Round(TcpGbps, 3));
            w.WriteNumber("transfer_gbps", Math.Round(TransferGbps, 3));
            w.WriteNumber("transfer_vs_tcp", Math.Round(Ratio, 3));
            w.WriteNumber("pooled_gbps", Math.Round(PooledGbps, 3));
            w.WriteNumber("pooled_vs_tcp", Math.Round(PooledRatio, 3));
            w.WriteNumber("best_tcp_gbps", Math.Round(BestTcpGbps, 3));
            w.WriteNumber("best_transfer_gbps", Math.Round(BestTransferGbps, 3));
            w.WriteNumber("best_pooled_gbps", Math.Round(BestPooledGbps, 3));
            w.WriteNumber("tcp_ms", Math.Round(TcpMs, 4));
            w.WriteNumber("transfer_ms", Math.Round(TransferMs, 4));
            w.WriteNumber("pooled_ms", Math.Round(PooledMs, 4));
        }
    }

    /// <summary>A run: the CPU it ran on, its settings and one row per size.</summary>
    public sealed record Result(string Cpu, int Repetitions, int SocketBufferBytes, IReadOnlyList<Row> Rows)
    {
        /// <summary>The table: one row per size after a blank line and the header.</summary>
        public void WriteTable(TextWriter output)
        {
            output.WriteLine();
            output.WriteLine(Invariant($"cpu: {Cpu}; {Repetitions} repetitions; socket buffers {(SocketBufferBytes == 0 ? "kernel default" : $"{SocketBufferBytes:N0} bytes")}; GB/s = 10^9 bytes/s, medians"));
            output.WriteLine($"{"size",10} {"memcpy GB/s",12} {"TCP GB/s",10} {"transfer GB/s",14} {"transfer/TCP",13} {"pooled GB/s",12} {"pooled/TCP",11} {"TCP ms",9} {"transfer ms",12} {"pooled ms",10}");
            foreach (Row r in Rows)
            {
                output.WriteLine(Invariant($"{FormatSize(r.SizeBytes),10} {r.MemcpyGbps,12:F2} {r.TcpGbps,10:F2} {r.TransferGbps,14:F2} {r.Ratio,12:P0} {r.PooledGbps,12:F2} {r.PooledRatio,10:P0} {r.TcpMs,9:F3} {r.TransferMs,12:F3} {r.PooledMs,10:F3}"));
            }
        }

        /// <summary>One JSON object (indented): the settings and the results array, one object per size.</summary>
        public void WriteJson(Stream output)
        {
            JsonReport.Write(output, indented: true, w =>
            {
                w.WriteString("cpu", Cpu);
                w.WriteNumber("repetitions", Repetitions);
                w.WriteNumber("socket_buffer_bytes", SocketBufferBytes);
                w.WriteStartArray("results");
                foreach (Row r in Rows)
                {
                    w.WriteStartObject();
                    r.WriteMembers(w);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            });
        }
    }

    /// <summary>
    /// Sizes as <c>--sizes</c> takes them: comma-separated, each a whole number of bytes with an optional KB, MB
    /// or GB (binary: 1MB = 1,048,576 bytes), a multiple of <paramref name="multiple"/> (8 for a payload of f32 keys
    /// and values, 4 for floats), from <paramref name="multiple"/> bytes to 1GB. <see cref="ArgumentException"/> naming the flag.
    /// </summary>
    public static IReadOnlyList<long> ParseSizes(string text, int multiple = 8)
    {
        var sizes = new List<long>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string upper = part.ToUpperInvariant();
            (string digits, long unit) = upper switch
            {
                _ when upper.EndsWith("GB", StringComparison.Ordinal) => (upper[..^2], 1L << 30),
                _ when upper.EndsWith("MB", StringComparison.Ordinal) => (upper[..^2], 1L << 20),
                _ when upper.EndsWith("KB", StringComparison.Ordinal) => (upper[..^2], 1L << 10),
                _ when upper.EndsWith('B') => (upper[..^1], 1L),
                _ => (upper, 1L),
            };
            if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long count) || count < 1
                || count > (1L << 30) / unit || count * unit % multiple != 0)
            {
                throw new ArgumentException($"--sizes: '{part}' is not a size from {multiple} bytes to 1GB that is a multiple of {multiple} bytes (e.g. 64KB, 16MB)");
            }

            sizes.Add(count * unit);
        }

        return sizes.Count > 0 ? sizes : throw new ArgumentException("--sizes: give at least one size (e.g. 1MB,16MB,64MB)");
    }

    /// <summary>A size as the table shows it: the largest binary unit that divides it.</summary>
    public static string FormatSize(long bytes) => bytes switch
    {
        _ when bytes % (1L << 30) == 0 => Invariant($"{bytes >> 30}GB"),
        _ when bytes % (1L << 20) == 0 => Invariant($"{bytes >> 20}MB"),
        _ when bytes % (1L << 10) == 0 => Invariant($"{bytes >> 10}KB"),
        _ => Invariant($"{bytes}B"),
    };

    /// <summary>Measures every size; a progress line per size on <paramref name="log"/>.</summary>
    public static async Task<Result> RunAsync(IReadOnlyList<long> sizes, int repetitions, int socketBufferBytes, TextWriter log, CancellationToken cancellationToken = default)
    {
        var options = KvTransferServerOptions.Default with { BindAddress = "127.0.0.1", SocketBufferBytes = socketBufferBytes };
        await using KvTransferServer server = KvTransferServer.Start(options);
        await using KvTransferServer pooledServer = KvTransferServer.Start(options with { PoolBuffers = true });
        var client = new KvTransferClient(KvTransferClientOptions.Default with { SocketBufferBytes = socketBufferBytes });
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Configure(listener, socketBufferBytes);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var rows = new List<Row>();
        int transfer = 0;
        foreach (long size in sizes)
        {
            log.WriteLine($"bench transfer: {FormatSize(size)} x {repetitions}...");
            byte[] source = GC.AllocateUninitializedArray<byte>((int)size);
            new Random(1).NextBytes(source);
            byte[] destination = GC.AllocateUninitializedArray<byte>((int)size);
            var payload = new KvTransferPayload(
                new KvTransferLayout { Layers = 1, KvHeads = 1, HeadDim = 1, Dtype = "f32", BlockSize = 16, TokenCount = (int)(size / 8) }, source);
            var copy = new List<double>();
            var tcp = new List<double>();
            var sent = new List<double>();
            var pooled = new List<double>();

            // Copies under 1 MB are timed in a batch of 1 MB (a single small one is near the clock's resolution); from
            // 1 MB up, one copy, after the other measurements have pushed the arrays out of the cache, as a transfer finds them.
            int copies = (int)Math.Max(1, (1L << 20) / size);
            for (int i = 0; i <= repetitions; i++)
            {
                long start = Stopwatch.GetTimestamp();
                for (int c = 0; c < copies; c++)
                {
                    source.AsSpan().CopyTo(destination);
                }

                double copySeconds = Stopwatch.GetElapsedTime(start).TotalSeconds / copies;

                double tcpSeconds = await PlainTcpAsync(listener, source, destination, socketBufferBytes, cancellationToken).ConfigureAwait(false);

                double sendSeconds = await TransferAsync(server, Invariant($"bench-{transfer++}")).ConfigureAwait(false);
                double pooledSeconds = await TransferAsync(pooledServer, Invariant($"bench-{transfer++}")).ConfigureAwait(false);
                if (i > 0)
                {
                    copy.Add(copySeconds);
                    tcp.Add(tcpSeconds);
                    sent.Add(sendSeconds);
                    pooled.Add(pooledSeconds);
                }
            }

            double Gbps(double seconds) => size / seconds / 1e9;
            rows.Add(new Row(size, Gbps(Median(copy)), Gbps(Median(tcp)), Gbps(Median(sent)), Gbps(Median(pooled)), Gbps(tcp.Min()), Gbps(sent.Min()), Gbps(pooled.Min())));

            // One transfer, timed at the sender from the start of SendAsync to the acknowledgement; the ticket is disposed after (a pooled buffer goes back).
            async Task<double> TransferAsync(KvTransferServer to, string id)
            {
                using KvTransferTicket ticket = to.Expect(id);
                long begin = Stopwatch.GetTimestamp();
                await client.SendAsync(to.Address, id, payload, cancellationToken).ConfigureAwait(false);
                double seconds = Stopwatch.GetElapsedTime(begin).TotalSeconds;
                if ((await ticket.Received.ConfigureAwait(false)).Data.Length != size)
                {
                    throw new InvalidOperationException($"transfer {id} arrived with the wrong length");
                }

                return seconds;
            }
        }

        return new Result(CpuModel(), repetitions, socketBufferBytes, rows);
    }

    /// <summary>One plain TCP stream of <paramref name="source"/>: connect, send it all, the receiver reads it all and answers one byte.</summary>
    private static async Task<double> PlainTcpAsync(Socket listener, byte[] source, byte[] destination, int socketBufferBytes, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        using var sender = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Configure(sender, socketBufferBytes);
        Task<Socket> accepting = listener.AcceptAsync(cancellationToken).AsTask();
        await sender.ConnectAsync(listener.LocalEndPoint!, cancellationToken).ConfigureAwait(false);
        using Socket receiver = await accepting.ConfigureAwait(false);
        receiver.NoDelay = true;
        Task receiving = ReceiveAllAsync(receiver, destination, cancellationToken);
        int offset = 0;
        while (offset < source.Length)
        {
            offset += await sender.SendAsync(source.AsMemory(offset), SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }

        byte[] ack = new byte[1];
        if (await sender.ReceiveAsync(ack, SocketFlags.None, cancellationToken).ConfigureAwait(false) != 1)
        {
            throw new InvalidOperationException("the plain TCP receiver closed without its acknowledgement");
        }

        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        await receiving.ConfigureAwait(false);
        return seconds;

        static async Task ReceiveAllAsync(Socket socket, byte[] buffer, CancellationToken cancellationToken)
        {
            int read = 0;
            while (read < buffer.Length)
            {
                int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    throw new InvalidOperationException("the plain TCP sender closed early");
                }

                read += n;
            }

            await socket.SendAsync(new byte[1], SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
    }

    private static void Configure(Socket socket, int bufferBytes)
    {
        if (bufferBytes > 0)
        {
            socket.SendBufferSize = bufferBytes;
            socket.ReceiveBufferSize = bufferBytes;
        }
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[(n / 2) - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>The CPU's model name from /proc/cpuinfo, with the logical core count; the architecture where there is none.</summary>
    internal static string CpuModel()
    {
        string? model = null;
        try
        {
            model = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim();
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return Invariant($"{model ?? System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString()}, {Environment.ProcessorCount} logical cores");
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

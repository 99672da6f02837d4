using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;
using Dynamo.Load.Reports;

namespace Dynamo.Load.Benchmarks;

/// <summary>
/// <c>dynamo bench collectives</c>: the all-reduce of the tensor-parallel ranks (Dynamo.Components/Parallel), per
/// message size and transport, between N rank processes on this host (this executable started again as each rank,
/// one process per rank as a worker runs them). Each rank first checks the collectives (every size's all-reduce
/// equals the rank-order sum bit for bit, a gather and a broadcast), then runs back-to-back all-reduces of each size;
/// rank 0 times each call. Figures: median and p99 latency of rank 0's calls and the bus bandwidth
/// (NCCL's definition: bytes / median x 2(N-1)/N, the traffic a ring all-reduce puts on each link).
/// </summary>
internal static partial class CollectivesBenchmark
{
    /// <summary>The default sizes: a few floats, a decode step's activations (1 x 768 x 4 B = 3 KB), up to 16 MB.</summary>
    public const string DefaultSizes = "4B,64B,1KB,3KB,16KB,64KB,256KB,1MB,4MB,16MB";

    /// <summary>One size over one transport.</summary>
    public sealed record Row(string Transport, long SizeBytes, int Iterations, double MedianUs, double P99Us, double BusGbps);

    /// <summary>A run: the CPU, the number of ranks and the rows (transport by transport, size by size).</summary>
    public sealed record Result(string Cpu, int Ranks, IReadOnlyList<Row> Rows)
    {
        /// <summary>One line per size, the transports side by side.</summary>
        public void WriteTable(TextWriter output)
        {
            string[] transports = [.. Rows.Select(r => r.Transport).Distinct()];
            output.WriteLine();
            output.WriteLine(Invariant($"cpu: {Cpu}; {Ranks} rank processes; all-reduce (sum of f32) latency of rank 0's calls in us; bus GB/s = size / median x 2(N-1)/N, 10^9 bytes/s"));
            output.Write($"{"size",8}");
            foreach (string t in transports)
            {
                output.Write($" {t + " median",12} {t + " p99",10} {t + " bus GB/s",13}");
            }

            output.WriteLine();
            foreach (long size in Rows.Select(r => r.SizeBytes).Distinct())
            {
                output.Write($"{TransferBenchmark.FormatSize(size),8}");
                foreach (string t in transports)
                {
                    Row? row = Rows.FirstOrDefault(r => r.Transport == t && r.SizeBytes == size);
                    output.Write(row is null ? $" {"",12} {"",10} {"",13}" : Invariant($" {row.MedianUs,12:F1} {row.P99Us,10:F1} {row.BusGbps,13:F3}"));
                }

                output.WriteLine();
            }
        }

        /// <summary>One JSON object (indented): the settings and one object per row.</summary>
        public void WriteJson(Stream output)
        {
            JsonReport.Write(output, indented: true, w =>
            {
                w.WriteString("cpu", Cpu);
                w.WriteNumber("ranks", Ranks);
                w.WriteStartArray("results");
                foreach (Row r in Rows)
                {
                    w.WriteStartObject();
                    w.WriteString("transport", r.Transport);
                    w.WriteNumber("size_bytes", r.SizeBytes);
                    w.WriteNumber("iterations", r.Iterations);
                    w.WriteNumber("median_us", Math.Round(r.MedianUs, 2));
                    w.WriteNumber("p99_us", Math.Round(r.P99Us, 2));
                    w.WriteNumber("bus_gbps", Math.Round(r.BusGbps, 4));
                    w.WriteEndObject();
                }

                w.WriteEndArray();
            });
        }
    }

    /// <summary>The timed calls of a size: as many as fit 256 MB of messages, at least 5, at most <paramref name="iterations"/>.</summary>
    public static int IterationsFor(long size, int iterations) => (int)Math.Clamp((256L << 20) / size, Math.Min(5, iterations), iterations);

    /// <summary>
    /// Starts <paramref name="ranks"/> rank processes (<paramref name="self"/> followed by <c>bench collectives ... --rank R</c>)
    /// per transport, waits for them and reads rank 0's rows. <see cref="IOException"/> quoting a rank's last lines when one fails.
    /// </summary>
    public static async Task<Result> RunAsync(IReadOnlyList<string> self, int ranks, IReadOnlyList<string> transports, string sizes, int iterations, TextWriter log, CancellationToken cancellationToken = default)
    {
        var rows = new List<Row>();
        foreach (string transport in transports)
        {
            string address = FreeInitAddress();
            log.WriteLine($"bench collectives: {ranks} ranks over {transport} at {address}...");
            var processes = new List<ChildProcess>();
            try
            {
                for (int r = 0; r < ranks; r++)
                {
                    string[] args = [.. self.Skip(1), "bench", "collectives", "--ranks", Invariant($"{ranks}"), "--transport", transport, "--sizes", sizes,
                        "--iterations", Invariant($"{iterations}"), "--rank", Invariant($"{r}"), "--dist-init-addr", address];
                    processes.Add(ChildProcess.Start(Invariant($"rank {r}"), self[0], args));
                }

                foreach (ChildProcess p in processes)
                {
                    int code = await p.WaitForExitAsync(TimeSpan.FromMinutes(20), cancellationToken).ConfigureAwait(false);
                    if (code != 0)
                    {
                        throw new IOException(Invariant($"bench collectives: {p.Name} ({transport}) exited with code {code}; its last lines:\n{p.Tail()}"));
                    }
                }

                foreach (Match m in RowLine().Matches(processes[0].Tail(ChildProcess.KeptLines)))
                {
                    long size = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                    double median = double.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
                    rows.Add(new Row(transport, size, int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), median,
                        double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture), size / (median * 1e3) * 2 * (ranks - 1) / ranks));
                }
            }
            finally
            {
                foreach (ChildProcess p in processes)
                {
                    await p.DisposeAsync().ConfigureAwait(false);
                }
            }
        }

        return new Result(TransferBenchmark.CpuModel(), ranks, rows);
    }

    private static int s_nextPort = 20_000 + Random.Shared.Next(10_000);

    /// <summary>
    /// A loopback address free now for a rank 0 to listen on, below Linux's ephemeral range (32768 and up): a port the
    /// kernel handed out for a moment would be handed out again, as the local port of the other ranks' connection
    /// attempts for one, while rank 0's process starts.
    /// </summary>
    internal static string FreeInitAddress()
    {
        while (true)
        {
            int port = Interlocked.Increment(ref s_nextPort);
            if (port >= 32_000)
            {
                Interlocked.CompareExchange(ref s_nextPort, 20_000, port);
                continue;
            }

            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return Invariant($"127.0.0.1:{port}");
            }
            catch (SocketException)
            {
                // Taken: the next one.
            }
        }
    }

    /// <summary>
    /// One rank: joins, checks the collectives, times every size; rank 0 writes a row line per size to
    /// <paramref name="output"/> (<c>row SIZE ITERATIONS MEDIAN_US P99_US</c>). <see cref="InvalidOperationException"/>
    /// when a result is wrong.
    /// </summary>
    public static async Task RunRankAsync(CollectiveMember member, CollectiveGroupOptions options, IReadOnlyList<long> sizes, int iterations, TextWriter output, CancellationToken cancellationToken = default)
    {
        using ICollectiveGroup group = await NetworkCollectives.JoinAsync(member, options, cancellationToken).ConfigureAwait(false);
        await Console.Error.WriteLineAsync(Invariant($"joined: rank {group.Rank} of {group.Size}")).ConfigureAwait(false);
        await Task.Factory.StartNew(() => Measure(group, sizes, iterations, output), cancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
    }

    private static void Measure(ICollectiveGroup group, IReadOnlyList<long> sizes, int iterations, TextWriter output)
    {
        Check(group);
        foreach (long size in sizes)
        {
            int n = (int)(size / sizeof(float));
            float[] values = Values(group.Rank, n);
            group.AllReduceSum(values);
            float[] expected = Values(0, n);
            for (int r = 1; r < group.Size; r++)
            {
                float[] x = Values(r, n);
                for (int i = 0; i < n; i++)
                {
                    expected[i] += x[i];
                }
            }

            if (!MemoryMarshal.AsBytes(values.AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(expected.AsSpan())))
            {
                throw new InvalidOperationException(Invariant($"rank {group.Rank}: the all-reduce of {n} floats is not the rank-order sum"));
            }

            int timed = IterationsFor(size, iterations);
            for (int i = 0; i < Math.Max(2, timed / 10); i++)
            {
                group.AllReduceSum(values);
            }

            double[] us = new double[timed];
            for (int i = 0; i < timed; i++)
            {
                long start = Stopwatch.GetTimestamp();
                group.AllReduceSum(values);
                us[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            }

            if (group.Rank == 0)
            {
                Array.Sort(us);
                output.WriteLine(Invariant($"row {size} {timed} {us[timed / 2]:F3} {us[Math.Min(timed - 1, (int)(timed * 0.99))]:F3}"));
                output.Flush();
            }
        }
    }

    /// <summary>A broadcast from the last rank and a gather to rank 0, checked.</summary>
    private static void Check(ICollectiveGroup group)
    {
        byte[] message = [.. Enumerable.Range(0, 1000).Select(i => (byte)i)];
        ReadOnlyMemory<byte> received = group.Broadcast(group.Rank == group.Size - 1 ? message : [], group.Size - 1);
        float[] gathered = new float[group.Rank == 0 ? 3 * group.Size : 0];
        group.Gather([group.Rank, group.Rank * 10, group.Rank * 100], gathered);
        if (!received.Span.SequenceEqual(message) || (group.Rank == 0 && !gathered.SequenceEqual(Enumerable.Range(0, group.Size).SelectMany(r => new float[] { r, r * 10, r * 100 }))))
        {
            throw new InvalidOperationException(Invariant($"rank {group.Rank}: a broadcast or gather came back wrong"));
        }
    }

    /// <summary>Values whose sum depends on the order of the additions.</summary>
    private static float[] Values(int rank, int n)
    {
        var random = new Random(1000 + rank);
        float[] values = new float[n];
        for (int i = 0; i < n; i++)
        {
            values[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-3, 4)));
        }

        return values;
    }

    [GeneratedRegex(@"^row (\d+) (\d+) ([\d.]+) ([\d.]+)$", RegexOptions.Multiline)]
    private static partial Regex RowLine();

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}

using Dynamo.Components.Parallel;
using Dynamo.Llm.Parallel;

namespace Dynamo.Tests.Components.Parallel;

/// <summary>The ranks of a network group as tasks of the test process, over real loopback TCP and /dev/shm.</summary>
internal static class CollectiveRanks
{
    /// <summary>How long a test may take before it counts as hung (a hang detector, generous for a loaded machine).</summary>
    public static readonly TimeSpan HangLimit = TimeSpan.FromMinutes(3);

    public static readonly CollectiveAgreement Agreement = CollectiveAgreement.FromText("model sha256 ab12, layout v1");

    /// <summary>
    /// Options of a transport name: "tcp" (TCP everywhere), "shm" (every rank on one host: shared memory), "hybrid"
    /// (ranks alternate between two host ids: shared memory within each, TCP between).
    /// </summary>
    public static CollectiveGroupOptions Options(string transport, int rank, CollectiveGroupOptions? start = null)
    {
        CollectiveGroupOptions options = start ?? CollectiveGroupOptions.Default;
        return transport switch
        {
            "tcp" => options with { Transport = CollectiveTransport.Tcp },
            "shm" => options with { Transport = CollectiveTransport.Auto, HostId = "test-host" },
            "hybrid" => options with { Transport = CollectiveTransport.Auto, HostId = rank % 2 == 0 ? "host-a" : "host-b" },
            _ => throw new ArgumentException(transport),
        };
    }

    public static string FreeAddress() => Dynamo.Load.Benchmarks.CollectivesBenchmark.FreeInitAddress();

    /// <summary>Every rank of a group of <paramref name="size"/> joined (index = rank).</summary>
    public static async Task<ICollectiveGroup[]> JoinAsync(int size, string transport, CollectiveGroupOptions? options = null)
    {
        string address = FreeAddress();
        Task<ICollectiveGroup>[] joins = [.. Enumerable.Range(0, size).Select(r =>
            NetworkCollectives.JoinAsync(new CollectiveMember(r, size, address, Agreement), Options(transport, r, options)))];
        return await Task.WhenAll(joins).WaitAsync(HangLimit);
    }

    /// <summary>Runs <paramref name="body"/> for every rank at once, each on a thread of its own (the collectives block).</summary>
    public static Task RunAsync(IReadOnlyList<ICollectiveGroup> groups, Action<ICollectiveGroup> body) =>
        Task.WhenAll(groups.Select(g => Task.Factory.StartNew(() => body(g), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))).WaitAsync(HangLimit);

    /// <summary>Runs <paramref name="body"/> for every rank and returns what each threw (null where it returned).</summary>
    public static async Task<Exception?[]> RunCatchingAsync(IReadOnlyList<ICollectiveGroup> groups, Action<ICollectiveGroup> body)
    {
        var thrown = new Exception?[groups.Count];
        await RunAsync(groups, g =>
        {
            try
            {
                body(g);
            }
            catch (Exception e)
            {
                thrown[g.Rank] = e;
            }
        });
        return thrown;
    }

    public static void DisposeAll(IEnumerable<ICollectiveGroup> groups)
    {
        foreach (ICollectiveGroup g in groups)
        {
            g.Dispose();
        }
    }

    /// <summary>Values of <paramref name="rank"/> whose sum depends on the order of the additions (mixed signs and magnitudes).</summary>
    public static float[] Values(int rank, int length, int seed = 0)
    {
        var random = new Random((rank * 7919) + (length * 31) + seed);
        float[] values = new float[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-4, 5)));
        }

        return values;
    }

    /// <summary>The contract's sum: ((x0 + x1) + x2) + ..., element by element.</summary>
    public static float[] RankOrderSum(int size, int length, int seed = 0)
    {
        float[] sum = Values(0, length, seed);
        for (int r = 1; r < size; r++)
        {
            float[] x = Values(r, length, seed);
            for (int i = 0; i < length; i++)
            {
                sum[i] += x[i];
            }
        }

        return sum;
    }

    public static int[] Bits(float[] values) => [.. values.Select(BitConverter.SingleToInt32Bits)];
}

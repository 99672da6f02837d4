namespace Dynamo.Load.Benchmarks;

/// <summary>
/// What <see cref="FaultBenchmark"/> deploys and which faults it injects. Defaults: three mocker workers, eight
/// streaming clients, every fault; <see cref="Quick"/> is the CI size.
/// </summary>
internal sealed record FaultOptions
{
    /// <summary>Every fault, in the order they run.</summary>
    public static readonly IReadOnlyList<string> AllFaults = ["kill", "stop", "nats", "etcd", "rolling", "partition"];

    public static FaultOptions Default { get; } = new();

    /// <summary>The CI size: two workers, four clients, short faults.</summary>
    public static FaultOptions Quick { get; } = new()
    {
        Workers = 2,
        Clients = 4,
        MaxTokens = 60,
        StopFor = TimeSpan.FromSeconds(8),
        PartitionFor = TimeSpan.FromSeconds(4),
        Settle = TimeSpan.FromSeconds(2),
        DrainTimeout = TimeSpan.FromSeconds(1),
    };

    /// <summary>Worker processes (--workers); at least 2, so that a stream always has somewhere to go.</summary>
    public int Workers { get; init; } = 3;

    /// <summary>Clients, each streaming one request after another (--clients).</summary>
    public int Clients { get; init; } = 8;

    /// <summary>Output tokens of every request, EOS ignored (--output-len).</summary>
    public int MaxTokens { get; init; } = 100;

    /// <summary>The faults to inject, in order (--faults): kill, stop, nats, etcd, rolling, partition.</summary>
    public IReadOnlyList<string> Faults { get; init; } = AllFaults;

    /// <summary>How long the stopped worker stays stopped (--stop-seconds).</summary>
    public TimeSpan StopFor { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>How long the partitioned worker's link stays cut (--partition-seconds).</summary>
    public TimeSpan PartitionFor { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long nats-server and etcd stay down when restarted (--outage-seconds).</summary>
    public TimeSpan Outage { get; init; } = TimeSpan.FromSeconds(2.5);

    /// <summary>Load between one fault's recovery and the next fault (--settle-seconds).</summary>
    public TimeSpan Settle { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The workers' --drain-timeout (the rolling restart).</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A request not over after this long counts as hung (failed).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Arguments of every worker after <c>worker</c> (the engine, its model).</summary>
    public IReadOnlyList<string> WorkerArgs { get; init; } = ["--engine", "mocker", "--speedup-ratio", "1"];

    /// <summary>The served model name.</summary>
    public string Model { get; init; } = "faults";

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting.</summary>
    public FaultOptions Validate()
    {
        static void Check(bool ok, string flag, string message)
        {
            if (!ok)
            {
                throw new ArgumentException($"{flag}: {message}", flag);
            }
        }

        Check(Workers is >= 2 and <= 64, "--workers", $"{Workers} is outside 2..64 (a stream needs a second worker to move to)");
        Check(Clients is >= 1 and <= 1024, "--clients", $"{Clients} is outside 1..1024");
        Check(MaxTokens is >= 1 and <= 100_000, "--output-len", $"{MaxTokens} is outside 1..100000");
        Check(Faults.Count > 0 && Faults.All(AllFaults.Contains), "--faults", $"'{string.Join(',', Faults)}' must be a comma-separated list of {string.Join(", ", AllFaults)}");
        Check(StopFor > TimeSpan.Zero && StopFor <= TimeSpan.FromMinutes(10), "--stop-seconds", $"{StopFor.TotalSeconds} is outside (0, 600]");
        Check(PartitionFor > TimeSpan.Zero && PartitionFor <= TimeSpan.FromMinutes(10), "--partition-seconds", $"{PartitionFor.TotalSeconds} is outside (0, 600]");
        Check(Outage >= TimeSpan.Zero && Outage <= TimeSpan.FromMinutes(10), "--outage-seconds", $"{Outage.TotalSeconds} is outside 0..600");
        Check(Settle >= TimeSpan.Zero && Settle <= TimeSpan.FromMinutes(10), "--settle-seconds", $"{Settle.TotalSeconds} is outside 0..600");
        return this;
    }
}

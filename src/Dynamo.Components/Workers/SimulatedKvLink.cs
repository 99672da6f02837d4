namespace Dynamo.Components.Workers;

/// <summary>
/// A network link that KV payloads without data are taken to cross, for benchmarks of disaggregation on mocker
/// workers (<c>dynamo bench disagg --engine mocker</c>): the mocker's blocks hold nothing, so its payloads carry a
/// token count and no bytes, and their real push over loopback costs next to nothing. A decode worker with a
/// link (<see cref="EngineWorkerOptions.SimulatedLink"/>) waits <see cref="TransferTime"/> for such a payload
/// before it hands it to its engine, and counts <see cref="Bytes"/> and that time as the transfer's. Payloads
/// with data (the built-in engine's) crossed a real socket and are delivered as they came.
/// </summary>
public sealed record SimulatedKvLink
{
    /// <summary>The defaults: the 110m benchmark model's KV in f32 (2 x 12 layers x 12 KV heads x 64 dims x 4 bytes) over 10 Gbit/s with 50 µs latency.</summary>
    public static SimulatedKvLink Default { get; } = new();

    /// <summary>Bytes of KV per prompt token (<c>--kv-bytes-per-token</c>).</summary>
    public long BytesPerToken { get; init; } = 2L * 12 * 12 * 64 * sizeof(float);

    /// <summary>Bandwidth in gigabits per second, 10^9 bits (<c>--link-gbps</c>).</summary>
    public double Gbps { get; init; } = 10;

    /// <summary>Time before the first byte arrives, per transfer (<c>--link-latency-us</c>).</summary>
    public TimeSpan Latency { get; init; } = TimeSpan.FromMicroseconds(50);

    /// <summary>Bytes of the KV of <paramref name="tokens"/> prompt tokens.</summary>
    public long Bytes(int tokens) => tokens * BytesPerToken;

    /// <summary>How long the KV of <paramref name="tokens"/> prompt tokens takes to cross: latency + bytes / bandwidth.</summary>
    public TimeSpan TransferTime(int tokens) => Latency + TimeSpan.FromSeconds(Bytes(tokens) * 8 / (Gbps * 1e9));

    /// <summary>The same link on a clock that runs <paramref name="speedup"/> times faster (a mocker's <c>--speedup-ratio</c>).</summary>
    public SimulatedKvLink ScaledBy(double speedup) => this with { Gbps = Gbps * speedup, Latency = Latency / speedup };

    /// <summary>Throws <see cref="ArgumentException"/> naming the flag of the first bad setting; returns this.</summary>
    public SimulatedKvLink Validate()
    {
        if (BytesPerToken < 1)
        {
            throw new ArgumentException($"--kv-bytes-per-token must be at least 1 (got {BytesPerToken})");
        }

        if (!(Gbps > 0) || !double.IsFinite(Gbps))
        {
            throw new ArgumentException($"--link-gbps must be a positive number (got {Gbps})");
        }

        if (Latency < TimeSpan.Zero)
        {
            throw new ArgumentException($"--link-latency-us must be 0 or more (got {Latency.TotalMicroseconds})");
        }

        return this;
    }
}
